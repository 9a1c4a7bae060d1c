from onetwo.cli import main

raise SystemExit(main())
