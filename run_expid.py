"""Train one experiment: python run_expid.py --config DIR --expid ID --gpu N"""
import sys

from fuxictr_mmctr.cli.experiment import train_main

if __name__ == "__main__":
    sys.exit(train_main())
