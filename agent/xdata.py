"""Exchange data on disk: versioned backups with manifests, checked, kept, and compared.

A LIM's exchange data (reload data plus system database data) is kept as *versions*: one
directory per data backup, named after the Service Node (LIM) number and a UTC time stamp
(``lim2-20261128T171500.123456Z``), holding the data files and a ``MANIFEST.json`` that
lists every file with its size, sha256 and modification time.

This module is the one name callers use (``from mxone_agent import xdata``); the work is
done in four modules of one purpose each, whose public names it gives:

* :mod:`mxone_agent.xdata_manifest`: version names, the manifest and every check of a
  value a peer or a manifest names (no file system);
* :mod:`mxone_agent.xdata_beneath`: the file system below the versions root, reached
  without following a symbolic link;
* :mod:`mxone_agent.xdata_store`: versions written whole, read, verified, listed, pruned;
* :mod:`mxone_agent.xdata_transfer`: comparing two sides and receiving a version.

Guarantees a caller may rely on:

* A version directory with that name exists only once it is complete: it is built under a
  temporary name, every file and the manifest are fsynced, then it is renamed into place
  and its parent fsynced. A crash leaves at most a temporary directory, never a half
  version under a version name; :func:`sweep_temporaries` removes those.
* :func:`newest_valid` skips versions whose files do not match their manifest.
* :func:`prune` removes old versions only after counting the valid ones, newest first, so
  the newest valid versions always survive (at least one: ``keep`` below 1 is refused).
* Nothing a peer or a manifest names reaches the filesystem unchecked (a peer holds the
  cluster's sync key, nothing more, and must not write anywhere else as root): a version
  name is ``lim<N>-<UTC stamp>`` in its one spelling, N a LIM number; a file path is
  relative, in its one plain spelling, with no ``..``, control character or white space
  (:func:`path_problem`); a size is a whole number up to :data:`MAX_FILE_BYTES`. Every path
  is resolved and must stay under the versions root (:func:`inside`); files are opened
  without following a symbolic link anywhere below the version (:func:`open_beneath`), so
  none is followed or created. A receiver checks its free space against the version's
  total before the first byte (:func:`receive`).
* Exchange data is root's only: the versions root and every directory below it are made
  0700, every file 0600, from their first byte.

Standard library only: this module ships with the agent to every node.
"""

from __future__ import annotations

from mxone_agent.xdata_beneath import (
    DIR_MODE,
    FILE_MODE,
    disk_use,
    ensure_root,
    inside,
    make_dirs_beneath,
    open_beneath,
    write_private,
)
from mxone_agent.xdata_manifest import (
    FORMAT,
    MANIFEST,
    MAX_BYTES,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    MAX_TIME_S,
    FileEntry,
    Manifest,
    XdataError,
    parse_lim,
    parse_version_name,
    path_problem,
    seconds_since_epoch,
    shown,
    version_name,
    whole_number,
)
from mxone_agent.xdata_store import (
    KEEP_ON_REGULAR,
    KEEP_ON_STANDBY,
    TEMP_PREFIX,
    keep_only_newest,
    new_temp_dir,
    newest_valid,
    prune,
    publish,
    read_manifest,
    scan,
    seal,
    sha256_file,
    sweep_temporaries,
    verify,
    versions,
    write_version,
)
from mxone_agent.xdata_transfer import (
    Received,
    TransferPlan,
    clock_skew_problem,
    disk_problem,
    free_space_problem,
    plan_transfer,
    receive,
    sync_direction,
)

__all__ = [
    "DIR_MODE", "FILE_MODE", "FORMAT", "KEEP_ON_REGULAR", "KEEP_ON_STANDBY", "MANIFEST",
    "MAX_BYTES", "MAX_FILES", "MAX_FILE_BYTES", "MAX_NAME_BYTES", "MAX_PATH_BYTES",
    "MAX_TIME_S", "TEMP_PREFIX",
    "FileEntry", "Manifest", "Received", "TransferPlan", "XdataError",
    "clock_skew_problem", "disk_problem", "disk_use", "ensure_root", "free_space_problem",
    "inside", "keep_only_newest", "make_dirs_beneath", "new_temp_dir", "newest_valid",
    "open_beneath", "parse_lim", "parse_version_name", "path_problem", "plan_transfer",
    "prune", "publish", "read_manifest", "receive", "scan", "seal", "seconds_since_epoch",
    "sha256_file", "shown", "sweep_temporaries", "sync_direction", "verify", "version_name",
    "versions", "whole_number", "write_private", "write_version",
]
