"""``mmctr build-embeddings``: item_info.parquet with a fused 128-d item embedding.

Example::

    mmctr build-embeddings --data-dir data/sample --fusion gate --tiny-clip
    mmctr build-embeddings --data-dir data --clip /models/clip-vit-base-patch32 --device cuda
    mmctr build-embeddings --data-dir data --source columns --fusion pca
    mmctr build-embeddings --data-dir data --source vlm:/models/Qwen2.5-VL-7B-Instruct:layer=-2 \
        --fusion pca --device cuda --batch-size 16
    mmctr build-embeddings --data-dir data --source text:/models/bge-small-en \
        --source image:/models/siglip-base-patch16-224 --source columns:txt_emb_BERT

    torchrun --nproc_per_node 8 -m fuxictr_mmctr.cli build-embeddings --data-dir data ...

Writes ``item_info_task1.parquet`` beside the input item_info (or ``--out``) and a
``.report.json`` next to it. Interrupted runs resume from the feature caches in ``--work-dir``.
Under torchrun each rank encodes its share of every model source (``--device cuda``: device
``LOCAL_RANK``) and rank 0 runs the rest.
Exit codes: 0 done, 2 bad input or unavailable weights, 3 stopped early (``--max-batches``).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..embeddings.encoders.clip import DEFAULT_CLIP
from ..embeddings.fusion import FUSIONS
from ..embeddings.encoders.vlm import DEFAULT_PROMPT
from ..embeddings.pipeline import BuildConfig, build_embeddings
from ..embeddings.projector import ProjectorConfig
from ..embeddings.sources import SPEC_HELP
from ..embeddings.student import StudentConfig
from ..embeddings.teacher import TeacherConfig
from ..process_group import configure_logging, session
from .options import Command

logger = logging.getLogger(__name__)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--data-dir", type=Path, help="MicroLens root: item_seq.parquet, "
                    "item_images/, item_feature.parquet, MicroLens_1M_x1/item_info.parquet")
    io.add_argument("--item-info", type=Path, help="override <data-dir>/MicroLens_1M_x1/"
                    "item_info.parquet")
    io.add_argument("--item-seq", type=Path, help="override <data-dir>/item_seq.parquet")
    io.add_argument("--item-feature", type=Path, help="override <data-dir>/item_feature.parquet")
    io.add_argument("--item-images", type=Path, help="override <data-dir>/item_images")
    io.add_argument("--out", type=Path, help="output parquet (default: item_info_task1.parquet "
                    "beside the input item_info)")
    io.add_argument("--work-dir", type=Path, help="cache of feature memmaps and done-masks "
                    "(default: <out stem>_work/ beside --out)")
    io.add_argument("--overwrite-input", action="store_true",
                    help="allow --out to be the input item_info (replaced only once the new "
                    "file is complete and validated)")
    m = parser.add_argument_group("method")
    m.add_argument("--source", dest="sources", action="append", metavar="SPEC",
                   help=f"a source of item features, repeatable: {SPEC_HELP}. Kinds: clip "
                   "(image + text of CLIP/SigLIP), image (a vision model), text (a text model, "
                   "sentence-transformers folders too), vlm (a vision-language model's hidden "
                   "states), columns (precomputed vectors of item_feature.parquet). Examples: "
                   "clip, columns, columns:txt_emb_BERT:dim=64, text:/models/bert:pooling=cls, "
                   "vlm:/models/Qwen2.5-VL-7B-Instruct:layer=-2,max_side=448. "
                   "Default: clip (the --clip model)")
    m.add_argument("--fusion", choices=FUSIONS, default="gate", help="default: gate")
    m.add_argument("--clip", default=DEFAULT_CLIP, help="the model of a clip source that names "
                   f"none: a CLIP name or local folder (default: {DEFAULT_CLIP})")
    m.add_argument("--tiny-clip", action="store_true",
                   help="demo/tests: build a tiny RANDOM CLIP instead of loading --clip")
    m.add_argument("--vlm-prompt", default=DEFAULT_PROMPT,
                   help="text of a vlm source's prompt beside the image; {text} is the item's "
                   f"title and tags (default: {DEFAULT_PROMPT!r})")
    m.add_argument("--local-files-only", action="store_true",
                   help="never try the network when loading a model")
    m.add_argument("--keep-mod", type=int, default=1,
                   help="Word2Vec on users with user_id %% keep_mod == 0 (default: 1 = all)")
    m.add_argument("--w2v-epochs", type=int, default=TeacherConfig.epochs)
    m.add_argument("--projector-epochs", type=int, default=ProjectorConfig.epochs)
    m.add_argument("--seed", type=int, default=2024)
    m.add_argument("--w2v-workers", type=int, default=TeacherConfig.workers,
                   help="Word2Vec threads (default 1: the same command gives the same file; "
                   "more are faster but not reproducible)")
    r = parser.add_argument_group("resources")
    r.add_argument("--batch-size", type=int, default=StudentConfig.batch_size,
                   help="items per batch of a model source (a source's batch_size=N overrides)")
    r.add_argument("--num-workers", type=int, default=StudentConfig.num_workers,
                   help="image-decoding DataLoader workers")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    r.add_argument("--max-batches", type=int, default=None,
                   help="stop a source's extraction after N batches (rerun to resume)")
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    r.add_argument("--rank-timeout", type=float, default=7200,
                   help="under torchrun: seconds a rank waits for the others (default 7200)")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The :class:`BuildConfig` an argument namespace describes."""
    return BuildConfig(
        data_dir=args.data_dir, item_seq=args.item_seq, item_images=args.item_images,
        item_feature=args.item_feature, item_info=args.item_info, out=args.out,
        work_dir=args.work_dir, sources=tuple(args.sources or ()), fusion=args.fusion,
        tiny_clip=args.tiny_clip, vlm_prompt=args.vlm_prompt,
        overwrite_input=args.overwrite_input, keep_mod=args.keep_mod, seed=args.seed,
        teacher=TeacherConfig(epochs=args.w2v_epochs, seed=args.seed, workers=args.w2v_workers),
        student=StudentConfig(clip=args.clip, batch_size=args.batch_size,
                              num_workers=args.num_workers, device=args.device,
                              max_batches=args.max_batches,
                              local_files_only=args.local_files_only,
                              progress=not args.no_progress),
        projector=ProjectorConfig(epochs=args.projector_epochs, seed=args.seed,
                                  device=args.device, progress=not args.no_progress))


def _run(args: argparse.Namespace) -> int:
    """Build the embeddings; under torchrun the ranks share each model source's pass (see
    :mod:`fuxictr_mmctr.embeddings.shards`)."""
    logging.getLogger("gensim").setLevel(max(logging.WARNING, logging.getLogger().level))
    # gloo: the ranks exchange only small CPU objects (models run wherever --device says). The
    # other ranks leave once the shares are merged while rank 0 trains the teacher.
    with session(backend="gloo", timeout_s=args.rank_timeout, final_barrier=False) as cluster:
        if not cluster.is_main:
            configure_logging(cluster)
        result = build_embeddings(config_from_args(args), cluster=cluster)
        if not result.complete:
            return 3
        if not cluster.is_main:
            return 0
    rep = result.report
    logger.info("Done: %s (fusion %s); sources %s; projector held-out cosine %s",
                result.out, rep["fusion"], rep["sources"],
                f"{rep['projector']['val_cosine']:.4f}" if "projector" in rep else "n/a")
    return 0


BUILD_EMBEDDINGS = Command("item_info with a fused 128-d multimodal item embedding (Task 1).",
                           _add_arguments, _run)
