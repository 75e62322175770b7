"""What several commands share: the ``--gpu`` and ``--config``/``--expid`` options, and
:class:`Command`, one command line (its description, its arguments, what it runs)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ..errors import run_guarded


def add_gpu_option(parser: argparse.ArgumentParser) -> None:
    """``--gpu N``: FuxiCTR's device index, -1 for CPU."""
    parser.add_argument("--gpu", type=int, default=-1, help="the GPU index, -1 for CPU "
                                                            "(default: -1)")


def add_experiment_options(parser: argparse.ArgumentParser, config: str = "./config/",
                           expid: Optional[str] = None) -> None:
    """``--config DIR --expid ID --gpu N``: one experiment, FuxiCTR's script options.

    Args:
        parser: the command's parser.
        config: the default config directory. Default: ``"./config/"`` (FuxiCTR's).
        expid: the default expid; None makes ``--expid`` required. Default: None.
    """
    parser.add_argument("--config", default=config,
                        help=f"the config directory (default: {config})")
    parser.add_argument("--expid", required=expid is None, default=expid,
                        help="the experiment id" + (f" (default: {expid})" if expid else ""))
    add_gpu_option(parser)


@dataclass(frozen=True)
class Command:
    """One command line: its description, its arguments and what it runs.

    ``mmctr NAME`` finds it in :data:`fuxictr_mmctr.cli.COMMANDS`; a root script
    (``run_expid.py``) calls :meth:`main` directly.
    """

    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]

    def main(self, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
        """Parse ``argv`` and run under the package's error handler (exit 2 on a user error)."""
        parser = argparse.ArgumentParser(prog=prog, description=self.description)
        self.add_arguments(parser)
        args = parser.parse_args(argv)
        return run_guarded(lambda: self.run(args), prog=parser.prog)
