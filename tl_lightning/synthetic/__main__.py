"""``python -m tl_lightning.synthetic``: generate the quick-start set, or a custom one with ``--out``."""

from tl_lightning.synthetic.generator import main

raise SystemExit(main())
