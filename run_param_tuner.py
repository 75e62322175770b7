"""Grid search: python run_param_tuner.py --config FILE --gpu 0 1 [--tag T] [--ray ADDRESS|local]"""
import sys

from fuxictr_mmctr.cli.experiment import tune_main

if __name__ == "__main__":
    sys.exit(tune_main())
