from streamprep.ops.signals import install_early

install_early()  # before anything slow is imported: a SIGTERM from now on ends `run` cleanly

from streamprep.cli import main  # noqa: E402

raise SystemExit(main())
