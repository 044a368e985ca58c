"""Export targets as data: the built-in platforms, extended or overridden by a model's [export] section."""

from __future__ import annotations

from dataclasses import dataclass

from modelcrew_assets.manifest import ExportSection

# The share of a 9:16 frame Instagram Stories/Reels and TikTok cover with their own UI
# (profile row and progress bar on top; caption, buttons and music line at the bottom).
VERTICAL_UI_TOP = 0.12
VERTICAL_UI_BOTTOM = 0.20


class ExportConfigError(ValueError):
    """An [export] section that names something that does not exist; the message says what to fix."""


@dataclass(frozen=True)
class Platform:
    name: str
    width: int
    height: int
    ui_top: float = 0.0  # fraction of the height covered by the app's UI
    ui_bottom: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def aspect(self) -> float:
        return self.width / self.height


BUILTIN_PLATFORMS: dict[str, Platform] = {
    "instagram_feed": Platform("instagram_feed", 1080, 1350),
    "instagram_square": Platform("instagram_square", 1080, 1080),
    "instagram_story": Platform("instagram_story", 1080, 1920, VERTICAL_UI_TOP, VERTICAL_UI_BOTTOM),
    "tiktok": Platform("tiktok", 1080, 1920, VERTICAL_UI_TOP, VERTICAL_UI_BOTTOM),
}


def resolve_platforms(export: ExportSection, source: str) -> tuple[Platform, ...]:
    """The platforms a model exports to, in manifest order; `source` names the manifest in errors."""
    custom = {
        name: Platform(name, size.width, size.height, size.ui_top, size.ui_bottom)
        for name, size in export.custom_platforms.items()
    }
    known = {**BUILTIN_PLATFORMS, **custom}
    unknown = [name for name in export.platforms if name not in known]
    if unknown:
        raise ExportConfigError(
            f"{source}: [export].platforms names {', '.join(map(repr, unknown))}, which is neither built in "
            f"({', '.join(BUILTIN_PLATFORMS)}) nor defined in [export.custom_platforms]; "
            "fix the name or add width/height for it under [export.custom_platforms.<name>]"
        )
    bad_names = [name for name in custom if not name.replace("_", "").replace("-", "").isalnum()]
    if bad_names:
        raise ExportConfigError(
            f"{source}: custom platform names {bad_names} become folder names; use letters, digits, '_' or '-'"
        )
    if not export.platforms:
        raise ExportConfigError(f"{source}: [export].platforms is empty; name at least one platform")
    return tuple(known[name] for name in dict.fromkeys(export.platforms))
