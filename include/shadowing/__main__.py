from shadowing.cli import main

raise SystemExit(main())
