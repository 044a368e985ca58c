import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from modelcrew_assets.object_store import ObjectStore, Storage
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.resources.storage_backends import StorageNotReachableError
from modelcrew_assets.storage_keys import InvalidKeyError, safe_file_name


def test_put_get_exists_and_hash(storage):
    result = storage.put_bytes("models/blondie/x/a.bin", b"hello")
    assert result.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert storage.get_bytes("models/blondie/x/a.bin") == b"hello"
    assert storage.exists("models/blondie/x/a.bin") and not storage.exists("models/blondie/x/b.bin")
    assert storage.content_sha256("models/blondie/x/a.bin") == result.sha256


def test_missing_key_raises_key_error_naming_it(storage):
    with pytest.raises(KeyError, match="nothing/here"):
        storage.get_bytes("nothing/here")


def test_listing_pages_through_everything_in_key_order(storage):
    keys = [f"uploads/m/targets/{index:04d}.jpg" for index in range(1105)]  # past S3's 1,000-key page
    with ThreadPoolExecutor(8) as pool:  # one by one, the puts to moto took 10 s
        list(pool.map(lambda key: storage.put_bytes(key, b"x"), keys))
    storage.put_bytes("uploads/mm/targets/other.jpg", b"x")
    listed = [obj.key for obj in storage.list("uploads/m/")]
    assert listed == keys


def test_etag_changes_when_content_changes(storage):
    storage.put_bytes("uploads/m/model.toml", b"one")
    before = storage.head("uploads/m/model.toml").etag
    storage.put_bytes("uploads/m/model.toml", b"two!")
    assert storage.head("uploads/m/model.toml").etag != before


def test_put_if_absent_never_overwrites(storage):
    assert storage.put_if_absent("uploads/m/face/a.jpg", b"first") is not None
    assert storage.put_if_absent("uploads/m/face/a.jpg", b"second") is None
    assert storage.get_bytes("uploads/m/face/a.jpg") == b"first"


@pytest.mark.parametrize("round_", range(5))
def test_put_if_absent_has_exactly_one_winner_among_racing_writers(storage, round_):
    writers = 8
    start, results = threading.Barrier(writers), [None] * writers

    def write(index: int) -> None:
        start.wait()
        results[index] = storage.put_if_absent(f"uploads/m/ledger/{round_}.json", f"writer {index}".encode())

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [index for index, result in enumerate(results) if result is not None]
    assert len(winners) == 1
    assert storage.get_bytes(f"uploads/m/ledger/{round_}.json") == f"writer {winners[0]}".encode()


def test_files_go_up_streamed_and_come_down_whole(storage, tmp_path):
    source = tmp_path / "checkpoint.safetensors"
    source.write_bytes(bytes(range(256)) * 4096)
    put = storage.put_file("models/m/lora_checkpoints/r/a.safetensors", source)
    assert (put.sha256, put.size) == (hashlib.sha256(source.read_bytes()).hexdigest(), source.stat().st_size)
    assert storage.content_sha256(put.key) == put.sha256
    storage.download(put.key, tmp_path / "back" / "a.safetensors")
    assert (tmp_path / "back" / "a.safetensors").read_bytes() == source.read_bytes()
    with pytest.raises(KeyError, match="nothing/here"):
        storage.download("nothing/here", tmp_path / "missing")


def test_object_store_and_the_resource_are_one_storage(tmp_path):
    url = f"file://{tmp_path / 'storage'}"
    store, resource = ObjectStore.from_url(url), StorageResource(url=url)
    members = [name for name in vars(Storage) if not name.startswith("_")]
    assert members and all(callable(getattr(api, name)) for api in (store, resource) for name in members)
    written = resource.put_bytes("a/b.txt", b"same")
    assert store.get_bytes("a/b.txt") == b"same" and store.content_sha256("a/b.txt") == written.sha256
    assert [item.key for item in store.list("a/")] == [item.key for item in resource.list("a/")]


def test_there_is_no_delete(storage):
    for api in (storage, storage.store):
        assert not any(name.startswith("delete") or name.startswith("remove") for name in dir(api))


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "uploads/../../x",
        "/abs/key",
        "uploads//x",
        "uploads/./x",
        "C:/x",
        "a\\b",
        "up\x00loads/x",
        "uploads/x\n",
        "",
    ],
)
def test_unsafe_keys_are_refused(storage, key):
    with pytest.raises(InvalidKeyError):
        storage.put_bytes(key, b"x")


def test_presigned_url_expires_and_bucket_stays_private(s3_storage):
    s3_storage.put_bytes("uploads/m/face/a.jpg", b"face")
    url = s3_storage.presigned_get_url("uploads/m/face/a.jpg", expires_in=120)
    assert "X-Amz-Expires=120" in url
    assert httpx.get(url).content == b"face"
    plain = url.split("?")[0]
    assert httpx.get(plain).status_code == 403


def test_local_storage_cannot_presign(local_storage):
    local_storage.put_bytes("uploads/m/face/a.jpg", b"face")
    with pytest.raises(StorageNotReachableError, match="MODELCREW_STORAGE_URL=s3://"):
        local_storage.presigned_get_url("uploads/m/face/a.jpg")


def test_local_writes_leave_no_temp_files(local_storage, tmp_path):
    local_storage.put_bytes("a/b.txt", b"1")
    assert [p.name for p in (tmp_path / "storage" / "a").iterdir()] == ["b.txt"]


def test_unsupported_url_names_the_variable():
    with pytest.raises(ValueError, match="MODELCREW_STORAGE_URL 'ftp://x'"):
        _ = StorageResource(url="ftp://x").backend


@pytest.mark.parametrize(
    ("name", "safe"),
    [("my photo.JPG", "my_photo.jpg"), ("bl\u00f6ndie \u00e9t\u00e9.png", "blondie_ete.png"), ("../../x.jpg", "x.jpg")],
)
def test_safe_file_names(name, safe):
    assert safe_file_name(name) == safe
