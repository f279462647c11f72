from streamprep.cli import main

raise SystemExit(main())
