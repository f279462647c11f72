from streamprep.cli.main import main

raise SystemExit(main())
