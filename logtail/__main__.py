from logtail.cli import main

raise SystemExit(main())
