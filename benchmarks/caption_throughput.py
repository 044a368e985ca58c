"""Caption throughput: 200 images against the fake OpenAI-compatible endpoint (0.5 s per answer) with
8 requests in flight, through the same code the captions asset runs (image reads, requests, cache writes).

Ideal = ceil(200 / 8) rounds x 0.5 s = 12.5 s. Prints wall / ideal (must be <= 1.25), and a single request's
measured round trip in the same run as the per-request baseline.
Run: .venv/bin/python benchmarks/caption_throughput.py
"""

import math
import sys
import tempfile
import time

from PIL import Image
from skimage import data

from modelcrew_assets.captions.generate import build_captions
from modelcrew_assets.captions.prompt import LIKENESS_PROMPT
from modelcrew_assets.manifest import parse_manifest
from modelcrew_assets.resources.captioner import CaptionerResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets_tests.builders import manifest_text, store_swapped_faces, target_variants
from modelcrew_assets_tests.fakes.openai_compatible import FAKE_MODEL, running_fake

IMAGES = 200
LATENCY_S = 0.5
CONCURRENCY = 8
MAX_RATIO = 1.25


def main() -> int:
    spec = parse_manifest(manifest_text("bench", "bench"), source="benchmark", expected_name="bench")
    face = Image.fromarray(data.astronaut())
    with tempfile.TemporaryDirectory() as root, running_fake(latency_s=LATENCY_S) as fake:
        storage = StorageResource(url=f"file://{root}")
        captioner = CaptionerResource(
            base_url=fake.base_url, api_key=fake.api_key, model=FAKE_MODEL, max_concurrency=CONCURRENCY
        )
        warmup = store_swapped_faces(StorageResource(url=f"file://{root}/warmup"), [face], "bench").images
        started = time.perf_counter()
        build_captions(StorageResource(url=f"file://{root}/warmup"), captioner, spec, warmup, LIKENESS_PROMPT)
        single = time.perf_counter() - started

        images = store_swapped_faces(storage, target_variants(face, IMAGES), "bench").images
        started = time.perf_counter()
        run = build_captions(storage, captioner, spec, images, LIKENESS_PROMPT)
        wall = time.perf_counter() - started

    ideal = math.ceil(IMAGES / CONCURRENCY) * LATENCY_S
    ratio = wall / ideal
    assert len(run.items) == IMAGES and {item.source for item in run.items} == {"model"}
    assert run.from_cache == 0 and len(fake.requests) == 1 + IMAGES, "every image must be a real request"
    print(f"caption_throughput: {IMAGES} images, latency {LATENCY_S}s, concurrency {CONCURRENCY}")
    print(f"single request (baseline, incl. start-up): {single:.2f}s; peak in flight: {fake.max_in_flight}")
    print(f"wall {wall:.2f}s / ideal {ideal:.2f}s = {ratio:.3f} (limit {MAX_RATIO})")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
