from nnxai.cli import main

raise SystemExit(main())
