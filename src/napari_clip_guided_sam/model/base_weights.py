"""Where a model's frozen base came from: the official files, the user's own files, or a seed.

Each backbone (SAM, CLIP) has one source. A checkpoint records both, so that it is only ever
applied on the base it was trained on: an official file is known by the registry's sha256,
a custom one (e.g. a SAM fine-tuned for microscopy) by the sha256 of the file the user chose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from . import weights
from .config import ModelConfig

SourceKind = Literal["official", "custom", "random"]
ROLES = ("sam", "clip")
ROLE_OPTIONS = {"sam": "--sam-weights", "clip": "--clip-weights"}
ROLE_NAMES = {"sam": "SAM", "clip": "CLIP"}


@dataclass(frozen=True)
class BaseSource:
    """The weights of one backbone: an official or custom file (name and sha256), or the
    seeded random initialisation."""

    kind: SourceKind
    file: str | None = None
    sha256: str | None = None

    def same_weights(self, other: BaseSource) -> bool:
        """Same tensors: same kind and, for files, same content (names may differ)."""
        return self.kind == other.kind and self.sha256 == other.sha256

    def describe(self) -> str:
        if self.kind == "random":
            return "random initialisation (seeded)"
        origin = "official file" if self.kind == "official" else "custom file (not official)"
        return f"{origin} {self.file}, sha256 {self.sha256}"


def official_file(role: str, config: ModelConfig) -> weights.WeightFile | None:
    """The registry entry of a backbone's official weights (None: there are none)."""
    if role == "sam":
        return weights.SAM_WEIGHTS.get(config.sam.variant)
    return weights.CLIP_WEIGHTS.get(config.clip.arch)


def identify(role: str, config: ModelConfig, path: str | Path) -> BaseSource:
    """The source a weight file stands for: official when its sha256 is the registry's."""
    digest = weights.file_sha256(path)
    official = official_file(role, config)
    kind: SourceKind = (
        "official" if official is not None and digest == official.sha256 else "custom"
    )
    return BaseSource(kind, Path(path).name, digest)


@dataclass(frozen=True)
class BaseWeights:
    """The sources of both backbones and the seed of everything randomly initialised."""

    sam: BaseSource
    clip: BaseSource
    seed: int = 0

    @property
    def tag(self) -> str:
        """Short form kept in checkpoint headers: "official", "random:<seed>" or "custom"."""
        kinds = {self.sam.kind, self.clip.kind}
        if kinds == {"official"}:
            return "official"
        if kinds == {"random"}:
            return f"random:{self.seed}"
        return "custom"

    @property
    def custom_roles(self) -> list[str]:
        return [role for role in ROLES if getattr(self, role).kind == "custom"]

    def same_weights(self, other: BaseWeights) -> bool:
        randoms = "random" in {self.sam.kind, self.clip.kind}
        return (
            self.sam.same_weights(other.sam)
            and self.clip.same_weights(other.clip)
            and (not randoms or self.seed == other.seed)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaseWeights:
        return cls(BaseSource(**data["sam"]), BaseSource(**data["clip"]), int(data["seed"]))

    @classmethod
    def official(cls, config: ModelConfig) -> BaseWeights:
        """Both backbones from their official files."""
        sources = {}
        for role in ROLES:
            file = official_file(role, config)
            if file is None:
                raise ValueError(f"Preset {config.name!r} has no official {ROLE_NAMES[role]}.")
            sources[role] = BaseSource("official", file.filename, file.sha256)
        return cls(sam=sources["sam"], clip=sources["clip"])

    @classmethod
    def from_tag(cls, tag: str, config: ModelConfig) -> BaseWeights:
        """The sources behind a short tag (checkpoints written before sources were recorded)."""
        kind, _, seed = str(tag).partition(":")
        if kind == "random":
            if not seed.isdigit():
                raise ValueError(
                    f"The base-weights tag {tag!r} is malformed: a random base is written "
                    "'random:<seed>' with a whole-number seed, e.g. 'random:0'."
                )
            return cls(BaseSource("random"), BaseSource("random"), int(seed))
        if kind == "official":
            return cls.official(config)
        raise ValueError(
            f"The base-weights tag {tag!r} does not say which files were used; the record of "
            "the run or checkpoint that names them is needed."
        )

    @classmethod
    def recorded(cls, record: dict | None, tag: str, config: ModelConfig) -> BaseWeights:
        """The sources a header or run recorded: the full record, else the short tag."""
        return cls.from_dict(record) if record is not None else cls.from_tag(tag, config)

    def describe(self) -> list[str]:
        lines = [f"{ROLE_NAMES[role]}: {getattr(self, role).describe()}" for role in ROLES]
        if "random" in {self.sam.kind, self.clip.kind}:
            lines.append(f"seed: {self.seed}")
        return lines


class BaseMismatchError(weights.WeightsError):
    """Base weights given for a checkpoint (or a resumed run) are not the ones it was
    trained on."""


def rebuild_arguments(
    base: BaseWeights,
    sam_weights: str | Path | None = None,
    clip_weights: str | Path | None = None,
    *,
    config: ModelConfig,
    what: str = "This checkpoint",
) -> dict[str, Any]:
    """`build_model` arguments that rebuild `base`, checking the files the user gave.

    A custom backbone needs the user to give the same file again (compared by sha256); a
    backbone trained on the official or random weights refuses any other file, so a
    checkpoint is never silently applied to another base.
    """
    given = {"sam": sam_weights, "clip": clip_weights}
    for role in ROLES:
        source, path = getattr(base, role), given[role]
        name, option = ROLE_NAMES[role], ROLE_OPTIONS[role]
        if source.kind == "custom" and path is None:
            raise BaseMismatchError(
                f"{what} was fine-tuned on custom {name} base weights, {source.file} "
                f"(sha256 {source.sha256}), not the official ones; give that file with "
                f"{option}."
            )
        if path is None:
            continue
        chosen = identify(role, config, path)
        if not chosen.same_weights(source):
            raise BaseMismatchError(
                f"{what} was fine-tuned on {name} base weights {source.describe()}, but "
                f"{option} {path} is the {chosen.describe()}. "
                + (
                    f"Give {source.file} with {option}."
                    if source.kind == "custom"
                    else f"Leave out {option}."
                )
            )
    base_kind = "random" if "random" in {base.sam.kind, base.clip.kind} else "official"
    if base_kind == "random":  # an official backbone beside a random one: name its file
        for role in ROLES:
            official = official_file(role, config)
            if getattr(base, role).kind == "official" and given[role] is None and official:
                given[role] = weights.fetch(official)
    return {
        "base_weights": base_kind,
        "sam_weights": given["sam"],
        "clip_weights": given["clip"],
        "seed": base.seed,
    }
