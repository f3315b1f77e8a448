"""What checking every image's header costs when a COCO dataset is built (:func:`alcv.data.coco.check_image_header`:
the file is opened and its header read, not its pixels), and that cost for 100,000 images.

Writes ``--images`` JPEGs of ``--size`` pixels into a temporary folder, then times, in one run, the header check of
every image and, for scale, decoding every image in full with PIL as the dataset does (what training pays per
image and epoch). The files are in the OS cache after they are written, so this is the cost on a local disk with a
warm cache; a cold network disk adds its latency per file.

Usage::

    python benchmarks/image_headers.py                      # 2,000 images of 640 x 480, about 30 s on 2 cores
    python benchmarks/image_headers.py --images 10000 --size 1280 720
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from alcv.data.coco import check_image_header

#: the dataset size the estimate is for
SCALE = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("WIDTH", "HEIGHT"))
    args = parser.parse_args()
    width, height = args.size
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        files = [Path(folder) / f"{index:06d}.jpg" for index in range(args.images)]
        for file in files:
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(file, quality=90)
        started = time.perf_counter()
        for index, file in enumerate(files):
            check_image_header(Path(folder) / "instances.json", index, file, (width, height))
        headers = (time.perf_counter() - started) / len(files)
        started = time.perf_counter()
        for file in files:
            with Image.open(file) as opened:
                np.asarray(opened.convert("RGB"))
        decoding = (time.perf_counter() - started) / len(files)
    print(f"{args.images} JPEGs of {width} x {height} pixels")
    print(f"header check: {headers * 1e6:.0f} us an image; for {SCALE:,} images {headers * SCALE:.1f} s")
    print(f"for scale, decoding an image in full: {decoding * 1e3:.2f} ms ({decoding / headers:.0f}x the header "
          f"check); for {SCALE:,} images {decoding * SCALE / 60:.1f} min")


if __name__ == "__main__":
    main()
