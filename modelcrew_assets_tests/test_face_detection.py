"""face_detection.py on real photos: dlib's HOG detector at its working size, boxes in source pixels."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

from modelcrew_assets.face_detection import (
    detect,
    detect_faces,
    detect_largest,
    largest_face,
    prominent_faces,
    working_scale,
)
from modelcrew_assets_tests.face_fixtures import panorama, small_portrait


def test_the_face_in_a_6000x1000_panorama_is_found_where_the_person_stands():
    # Haar on a 1024 px copy finds nothing here (the face is ~22 px there).
    faces = detect_faces(panorama())
    assert len(faces) == 1
    face = faces[0]
    assert 4200 < face.x < face.x + face.width < 4700 and 500 < face.y < 1000


def test_a_300px_portrait_has_exactly_one_face():
    # Haar counts two faces in it (the face and a patch of the suit).
    faces = prominent_faces(small_portrait())
    assert len(faces) == 1
    assert 60 < faces[0].x < 150 and 30 < faces[0].width < 90


def test_images_are_searched_at_a_short_side_of_1024_within_bounds():
    assert working_scale((4000, 3000)) == 1024 / 3000
    assert working_scale((6000, 1000)) == 4096 / 6000
    assert working_scale((300, 300)) == 1024 / 300
    assert working_scale((100, 100)) == 4.0


def test_the_largest_face_comes_first_even_when_sizes_differ_by_six_percent(astronaut):
    for left, right in ((astronaut, astronaut.resize((480, 480))), (astronaut.resize((480, 480)), astronaut)):
        photo = Image.new("RGB", (1100, 600), "white")
        photo.paste(left, (0, 40))
        photo.paste(ImageOps.mirror(right), (560, 60))
        faces = detect_faces(photo)
        assert len(faces) == 2
        assert (faces[0].x < 512) == (left.width == 512)


def test_the_quick_largest_face_search_finds_the_same_face_with_the_same_landmarks(astronaut):
    """detect_largest scans a half-size copy first; its landmarks, placed on the full working copy, are the
    full search's to within a few pixels, for a large face, the larger of two and a face too small for the
    half-size copy (which falls back to the full search)."""
    pair = Image.new("RGB", (1100, 600), "white")
    pair.paste(astronaut, (0, 40))
    pair.paste(ImageOps.mirror(astronaut.resize((300, 300))), (700, 200))
    small_face = Image.new("RGB", (2400, 2400), "white")
    small_face.paste(astronaut.resize((1000, 1000)), (600, 600))  # found at full size only
    for photo in (astronaut, pair, small_face):
        full, quick = detect(photo), detect_largest(photo)
        assert len(quick.faces) == 1 and quick.pixels.shape == full.pixels.shape
        points = [[(p.x, p.y) for p in face.parts()] for face in (full.faces[0], quick.faces[0])]
        assert np.abs(np.subtract(*points)).max() <= 3


def test_a_photo_without_a_face_has_none():
    assert largest_face(Image.linear_gradient("L").resize((800, 600)).convert("RGB")) is None


def test_threads_detecting_at_once_get_the_same_answers(astronaut):
    photos = [astronaut, ImageOps.mirror(astronaut), small_portrait(), astronaut.resize((900, 900))] * 3
    alone = [detect_faces(photo) for photo in photos]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(detect_faces, photos)) == alone
