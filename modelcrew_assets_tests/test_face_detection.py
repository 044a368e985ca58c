"""face_detection.py on real photos: dlib's HOG detector at its working size, boxes in source pixels."""

from concurrent.futures import ThreadPoolExecutor

from PIL import Image, ImageOps

from modelcrew_assets.face_detection import (
    detect_faces,
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


def test_a_photo_without_a_face_has_none():
    assert largest_face(Image.linear_gradient("L").resize((800, 600)).convert("RGB")) is None


def test_threads_detecting_at_once_get_the_same_answers(astronaut):
    photos = [astronaut, ImageOps.mirror(astronaut), small_portrait(), astronaut.resize((900, 900))] * 3
    alone = [detect_faces(photo) for photo in photos]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(detect_faces, photos)) == alone
