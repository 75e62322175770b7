"""Write a Codabench submission: python prediction.py --config DIR --expid ID --gpu N [--task Task2]"""
import sys

from fuxictr_mmctr.cli.experiment import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
