from ncap.cli.commands import main

raise SystemExit(main())
