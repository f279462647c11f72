"""``streamprep run --workers N``: all cores of a bigger box, N worker processes under one supervisor.

One Python process keeps about one core busy with what its threads cannot overlap (the event loop, the
per-frame bookkeeping, whatever holds the GIL). With many cameras on many cores, ``--workers N`` (or
``workers = N`` in the config) runs N copies of the pipeline, each in a process of its own owning a stable
share of the sources, and this module supervises them:

- **Shares** (:func:`plan`): each source goes to the first worker in its own order of preference (rendezvous
  hashing of its id) that has room, room being an equal share (⌈sources/N⌉), the sources placed in the
  order of their ids' hashes. So the shares are balanced (they differ by one source at most), and the same
  on every start and every machine, whatever order the config lists them in. On a reload, sources that stay
  stay with their worker; a new one goes to its first choice with room (the supervisor keeps the plan and
  hands it to the workers in ``shares.json``). A worker with no source is not started.
- **Each worker** is ``streamprep run`` with the same arguments plus ``--worker K/N``: it reads the same
  config, keeps its share (:func:`worker_config`), and has its own MQTT client id (``…-workerK``), its own
  outbox (``state_dir/worker-K``), its own status socket (in the supervisor's runtime directory), no metrics
  listener and no sd_notify of its own. Its JSON lines go up a pipe, and the supervisor writes them whole to
  ``--out`` (or stdout): lines of two workers never mix. Its logs carry ``[worker K]``.
- **The supervisor** merges the workers' snapshots (:func:`merge`) for the dashboard, ``streamprep top``
  (its status socket), the Prometheus metrics and sd_notify (READY once every worker reports, STATUS,
  WATCHDOG). It forwards SIGTERM/SIGINT (a second one stops the workers at once, as it would one process)
  and SIGHUP (each worker re-reads the config; a worker whose share was empty is started). A worker that
  dies (a signal, or exit status 1: a bug) is restarted after a backoff (1 s, doubling up to 30 s; afresh
  after a minute of health); its sources' counts carry over from its last snapshot, settled against the
  results the supervisor wrote for them (:func:`settle`: those are ``processed``, the frames it had in
  flight ``stopped``). A file whose results the supervisor writes resumes after the last one written: the
  supervisor passes the next seq in ``worker-K.resume.json`` and the new worker's file source decodes up
  to it without handing frames over, so sampling and seqs match a replay never interrupted. A worker that
  ends by itself leaves its exact counts in ``worker-K.final.json``; at the end the supervisor prints the
  per-source summary over every run. Other exit statuses are a worker's verdict and end it. The exit status of
  the whole is the most serious of the workers' (130, 1, 4, 3, 5, 2, in that order; the one rule for a single
  run too: :func:`streamprep.values.errors.most_serious`).

Workers run in a session of their own, so a Ctrl-C in the terminal reaches only the supervisor, which
forwards it; under systemd, ``KillMode=mixed`` gives the stop signal to the supervisor alone. A worker whose
supervisor disappears stops itself (its stdin, a pipe from the supervisor, reaches end of file).
"""

from __future__ import annotations

from streamprep.ops.workers._child import as_worker, worker_config
from streamprep.ops.workers._counts import Carried, merge, settle
from streamprep.ops.workers._pool import supervise
from streamprep.ops.workers._shares import plan, report_final, shares

__all__ = [
    "Carried",
    "as_worker",
    "merge",
    "plan",
    "report_final",
    "settle",
    "shares",
    "supervise",
    "worker_config",
]
