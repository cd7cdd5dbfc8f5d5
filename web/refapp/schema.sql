-- mxone_snm (reference management application): its one table.
CREATE TABLE IF NOT EXISTS entries (
    id        bigserial   PRIMARY KEY,
    body      text        NOT NULL,
    served_by text        NOT NULL,
    created   timestamptz NOT NULL DEFAULT now()
);
