"""``python -m tl_lightning.synthetic.pretrain --out DIR --seed S --n N``: write the pretraining corpus."""

from tl_lightning.synthetic.pretrain.corpus import main

raise SystemExit(main())
