"""ffmpeg, from the imageio-ffmpeg wheel (it ships the binary: no system install), run on files in a
temporary folder: the finished reel (1080x1920 H.264, yuv420p, faststart, watermark, optional music), its
poster frame, the simulated provider's slow zoom, and a probe of what a file really holds."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

REEL_SIZE = (1080, 1920)
FFMPEG_TIMEOUT_S = 300
# x264's speed/size trade-off for the finished reel; tests set "ultrafast" (same size, codec and format).
X264_PRESET = "veryfast"
# Instagram and TikTok normalise to about -14 LUFS; a track mastered louder would be turned down (and clip).
LOUDNESS = "loudnorm=I=-14:TP=-1.5:LRA=11"
_STREAM = re.compile(r"Stream #\d+:\d+[^:]*: (Video|Audio): (\w+)([^\n]*)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


class FfmpegError(RuntimeError):
    """ffmpeg refused a file or failed; the message carries what was being made and ffmpeg's last lines."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    codec: str
    pixel_format: str
    duration_s: float
    audio_codec: str | None


def finish_reel(
    raw: bytes, duration_s: float, overlay_png: bytes | None, music: bytes | None, metadata: dict[str, str]
) -> bytes:
    """The provider's clip as a platform-ready reel: scaled and cropped to fill 1080x1920, the watermark
    overlay on top, the music (loudness-normalised, padded or trimmed to length, faded out) or no sound."""
    width, height = REEL_SIZE
    with tempfile.TemporaryDirectory(prefix="modelcrew-reel-") as folder:
        work = Path(folder)
        (work / "raw.mp4").write_bytes(raw)
        inputs = ["-i", "raw.mp4"]
        video = f"[0:v]scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height},setsar=1,scale=out_range=tv"
        graph = [f"{video}[base]"]
        last = "[base]"
        if overlay_png is not None:
            (work / "overlay.png").write_bytes(overlay_png)
            inputs += ["-i", "overlay.png"]
            graph.append(f"{last}[1:v]overlay=0:0:format=auto[marked]")
            last = "[marked]"
        graph.append(f"{last}format=yuv420p[v]")
        maps = ["-map", "[v]"]
        if music is not None:
            (work / "music").write_bytes(music)
            inputs += ["-i", "music"]
            fade = max(0.0, duration_s - 0.5)
            track = len(inputs) // 2 - 1
            graph.append(
                f"[{track}:a]{LOUDNESS},apad,atrim=0:{duration_s},afade=t=out:st={fade}:d=0.5,asetpts=N/SR/TB[a]"
            )
            maps += ["-map", "[a]", "-c:a", "aac", "-b:a", "128k", "-ar", "48000"]
        tags = [part for name, value in metadata.items() for part in ("-metadata", f"{name}={value}")]
        _run(
            [*inputs, "-filter_complex", ";".join(graph), *maps, "-t", f"{duration_s}",
             "-c:v", "libx264", "-profile:v", "high", "-preset", X264_PRESET, "-crf", "20", "-pix_fmt", "yuv420p",
             "-movflags", "+faststart", *tags, "reel.mp4"],
            work,
            "the finished reel",
        )  # fmt: skip
        return (work / "reel.mp4").read_bytes()


def poster_frame(mp4: bytes, at_s: float = 0.0) -> bytes:
    """One frame of the reel as a JPEG (the cover shown in the UI and the post's thumbnail)."""
    with tempfile.TemporaryDirectory(prefix="modelcrew-poster-") as folder:
        work = Path(folder)
        (work / "reel.mp4").write_bytes(mp4)
        _run(["-ss", f"{at_s}", "-i", "reel.mp4", "-frames:v", "1", "-q:v", "3", "poster.jpg"], work, "the poster")
        return (work / "poster.jpg").read_bytes()


def zoom_clip(jpeg: bytes, duration_s: float, size: tuple[int, int], fps: int = 24) -> bytes:
    """A slow push-in on a still: what the simulated provider returns instead of a generated video."""
    width, height = size
    frames = max(1, round(duration_s * fps))
    with tempfile.TemporaryDirectory(prefix="modelcrew-zoom-") as folder:
        work = Path(folder)
        (work / "still.jpg").write_bytes(jpeg)
        zoom = f"zoompan=z='1+0.08*on/{frames}':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':d={frames}:s={width}x{height}:fps={fps}"
        _run(
            ["-i", "still.jpg", "-vf", f"{zoom},scale=out_range=tv,format=yuv420p", "-frames:v", f"{frames}", "-c:v", "libx264",
             "-preset", "ultrafast", "clip.mp4"],
            work,
            "the simulated clip",
        )  # fmt: skip
        return (work / "clip.mp4").read_bytes()


def probe(mp4: bytes) -> VideoInfo:
    """Size, codecs, pixel format and duration, as ffmpeg reads them from the file (`ffmpeg -i`)."""
    with tempfile.TemporaryDirectory(prefix="modelcrew-probe-") as folder:
        path = Path(folder) / "video.mp4"
        path.write_bytes(mp4)
        result = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    streams = {kind: (codec, rest) for kind, codec, rest in _STREAM.findall(result.stderr)}
    duration = _DURATION.search(result.stderr)
    if "Video" not in streams or duration is None:
        raise FfmpegError(f"ffmpeg reads no video stream in the file: {result.stderr.strip()[-300:]}")
    codec, rest = streams["Video"]
    size = _SIZE.search(rest)
    hours, minutes, seconds = duration.groups()
    return VideoInfo(
        width=int(size.group(1)) if size else 0,
        height=int(size.group(2)) if size else 0,
        codec=codec,
        pixel_format=rest.split(",")[1].strip().split("(")[0].strip() if "," in rest else "",
        duration_s=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
        audio_codec=streams["Audio"][0] if "Audio" in streams else None,
    )


def _run(arguments: list[str], folder: Path, what: str) -> None:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *arguments]
    try:
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise FfmpegError(f"ffmpeg making {what}: no result after {FFMPEG_TIMEOUT_S}s") from None
    if result.returncode != 0:
        raise FfmpegError(f"ffmpeg making {what} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
