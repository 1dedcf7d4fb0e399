"""Class names: which label values form which class, and the text forms users type.

Typed text follows one rule: entries are separated by commas, semicolons or new lines, and
blanks inside a name collapse to one space. A class list is ``"nucleus, cell body"``; a
class map is ``"1=nucleus, 2+3=cell"``: label value(s) ``=`` class name, several values of
one class joined by ``+``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ClassMap",
    "LabelTable",
    "format_class_map",
    "parse_class_map",
    "parse_class_names",
]

_ENTRY_SEPARATORS = re.compile(r"[,;\n]")
_VALUE_JOIN = "+"


class ClassMap:
    """Which label values belong to which class name.

    Either an explicit mapping ``{label value: class name}`` or a single class for all
    nonzero values (instance labels). 0 is background unless ``background=False`` (then 0
    may be a class, and every value must be). Several values may share a class name (e.g.
    a layer painted with 1 and 3 for cells); in text they are one entry, ``1+3=cell`` (see
    :func:`parse_class_map`). Pixels of ``ignore_index`` count for nothing.
    """

    def __init__(
        self,
        mapping: Mapping[int, str] | None = None,
        *,
        nonzero_class: str | None = None,
        background: bool = True,
        ignore_index: int | None = None,
    ) -> None:
        if (mapping is None) == (nonzero_class is None):
            raise ValueError("give either a {value: name} mapping or nonzero_class, not both")
        if nonzero_class is not None and not background:
            raise ValueError(
                "a single class for all nonzero values needs label 0 as background; map "
                "every value explicitly when label 0 is a class (e.g. 0=pore,1=clay)"
            )
        self.background = bool(background)
        self._nonzero_class = _check_name(nonzero_class) if nonzero_class is not None else None
        self._mapping = _check_mapping(mapping, background) if mapping is not None else {}
        self.ignore_index = _check_ignore_index(ignore_index, self._mapping, background)

    @classmethod
    def from_dict(cls, mapping: Mapping[Any, str]) -> ClassMap:
        """From ``{label value: class name}``; keys may be ints or digit strings (JSON)."""
        return cls(dict(mapping))

    @classmethod
    def single_class(cls, name: str, *, ignore_index: int | None = None) -> ClassMap:
        """All nonzero label values (e.g. instance labels) are the one class ``name``."""
        return cls(nonzero_class=name, ignore_index=ignore_index)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClassMap:
        """Inverse of :meth:`to_config`."""
        if not isinstance(config, Mapping):
            raise ValueError(
                f'a class map config is a JSON object like {{"classes": {{"1": "nucleus"}}}} '
                f'or {{"single_class": "nucleus"}}, got {type(config).__name__} {config!r}'
            )
        ignore_index = config.get("ignore_index")
        if "single_class" in config:
            return cls.single_class(config["single_class"], ignore_index=ignore_index)
        if "classes" in config:
            if not isinstance(config["classes"], Mapping):
                raise ValueError(
                    f"'classes' of a class map config maps label values to names, e.g. "
                    f'{{"1": "nucleus"}}, got {config["classes"]!r}'
                )
            background = config.get("background", True)
            if not isinstance(background, bool):
                raise ValueError(
                    f"class map 'background' must be true or false, got {background!r}"
                )
            return cls(config["classes"], background=background, ignore_index=ignore_index)
        raise ValueError(f"class map config needs 'single_class' or 'classes', got {config}")

    def to_config(self) -> dict[str, Any]:
        """JSON-friendly form: ``{"single_class": name}`` or ``{"classes": {"1": name}}``,
        plus ``"background": false`` and ``"ignore_index"`` when they are set."""
        if self._nonzero_class is not None:
            config: dict[str, Any] = {"single_class": self._nonzero_class}
        else:
            config = {"classes": {str(v): n for v, n in self._mapping.items()}}
            if not self.background:
                config["background"] = False
        if self.ignore_index is not None:
            config["ignore_index"] = self.ignore_index
        return config

    @property
    def is_single_class(self) -> bool:
        """True if every nonzero value is the one class."""
        return self._nonzero_class is not None

    @property
    def class_names(self) -> tuple[str, ...]:
        """Unique class names, in order of first appearance (by label value)."""
        if self._nonzero_class is not None:
            return (self._nonzero_class,)
        return tuple(dict.fromkeys(self._mapping.values()))

    def values_of(self, class_name: str) -> tuple[int, ...] | None:
        """Label values of ``class_name``; None means "all nonzero values"."""
        self._check_class(class_name)
        if self._nonzero_class is not None:
            return None
        return tuple(v for v, n in self._mapping.items() if n == class_name)

    def mask(self, labels: np.ndarray, class_name: str) -> np.ndarray:
        """``bool`` mask (same shape as ``labels``) of the pixels of ``class_name``."""
        values = self.values_of(class_name)
        labels = np.asarray(labels)
        if values is None:
            mask = labels != 0
            return mask if self.ignore_index is None else mask & (labels != self.ignore_index)
        return np.isin(labels, values)

    def valid(self, labels: np.ndarray) -> np.ndarray | None:
        """``bool`` mask of the pixels that count (all but ``ignore_index``); None: all."""
        if self.ignore_index is None:
            return None
        return np.asarray(labels) != self.ignore_index

    def _not_classes(self) -> set[int]:
        """Label values that are no class: background 0 and the ignore value."""
        values = {0} if self.background else set()
        return values if self.ignore_index is None else values | {self.ignore_index}

    def classes_present(self, values: Iterable[int]) -> list[str]:
        """Class names having at least one of the label ``values`` (e.g. ``np.unique``)."""
        values = {int(v) for v in values} - self._not_classes()
        if self._nonzero_class is not None:
            return [self._nonzero_class] if values else []
        present = {self._mapping[v] for v in values if v in self._mapping}
        return [n for n in self.class_names if n in present]

    def unknown_values(self, values: Iterable[int]) -> list[int]:
        """Label values not covered by the map (nor background nor ignored), sorted."""
        if self._nonzero_class is not None:
            return []
        return sorted({int(v) for v in values} - self._not_classes() - self._mapping.keys())

    def label_table(self) -> LabelTable:
        """The label value each class gets in a segmentation output (its smallest value;
        a single class is 1), and the value of pixels no class claims (see LabelTable)."""
        if self._nonzero_class is not None:
            return LabelTable({self._nonzero_class: 1})
        values = {name: min(self.values_of(name) or ()) for name in self.class_names}
        return LabelTable(values, _unlabelled_value(self.background, self.ignore_index, values))

    def validate(self, labels: np.ndarray, source: str = "labels") -> None:
        """Raise ValueError listing label values of ``labels`` that are not in the map."""
        self.check_values(np.unique(np.asarray(labels)), source)

    def check_values(self, values: Iterable[int], source: str = "labels") -> None:
        """Raise ValueError listing the label ``values`` (found in ``source``) not in the map.

        Negative values are refused in every map: labels are 0 (background) or positive.
        """
        values = {int(v) for v in values}
        negative = sorted(v for v in values if v < 0)
        if negative:
            shown = ", ".join(map(str, negative[:20])) + (" ..." if len(negative) > 20 else "")
            raise ValueError(
                f"{source} contains negative label values: {shown}; label values are 0 "
                "(background) or positive class or object ids: fix the label image"
            )
        unknown = self.unknown_values(values)
        if not unknown:
            return
        shown = ", ".join(map(str, unknown[:20])) + (" ..." if len(unknown) > 20 else "")
        hint = (
            "add them to the map, or for instance labels give one class to every nonzero "
            "value (--class NAME on the command line, ClassMap.single_class in Python)"
        )
        if 0 in unknown:
            hint = "label 0 is a class here (no background): map it too, e.g. 0=pore"
        raise ValueError(
            f"{source} contains label values not in the class map: {shown} (the map covers "
            f"{sorted(self._mapping)}); {hint}"
        )

    def _check_class(self, class_name: str) -> None:
        if class_name not in self.class_names:
            raise KeyError(f"unknown class {class_name!r}; classes are {list(self.class_names)}")

    def __len__(self) -> int:
        return len(self.class_names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassMap):
            return NotImplemented
        return self._key() == other._key()

    def _key(self) -> tuple:
        return (self._nonzero_class, self._mapping, self.background, self.ignore_index)

    def __repr__(self) -> str:
        ignore = "" if self.ignore_index is None else f", ignore_index={self.ignore_index}"
        if self._nonzero_class is not None:
            return f"ClassMap.single_class({self._nonzero_class!r}{ignore})"
        background = "" if self.background else ", background=False"
        return f"ClassMap({self._mapping!r}{background}{ignore})"


@dataclass(frozen=True)
class LabelTable:
    """Label values of a segmentation output: class name -> value, and ``unlabelled``, the
    value of pixels no class claims (0, or with label 0 a class: see ``ClassMap``).

    A checkpoint carries the table of the class map it was trained on, so segmenting any of
    its classes writes each with the value it had in the training labels.
    """

    values: dict[str, int] = field(default_factory=dict)
    unlabelled: int = 0

    def to_config(self) -> dict[str, Any]:
        return {"values": dict(self.values), "unlabelled": self.unlabelled}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LabelTable:
        values = {str(name): int(value) for name, value in config.get("values", {}).items()}
        return cls(values, int(config.get("unlabelled", 0)))

    @classmethod
    def positional(cls, class_names: Iterable[str]) -> LabelTable:
        """Value ``k + 1`` for the k-th name, 0 unlabelled (names without a trained table)."""
        return cls({name: k + 1 for k, name in enumerate(class_names)})

    def subset(self, class_names: Iterable[str]) -> LabelTable | None:
        """The table of some of its classes, or None when a name is not in it."""
        names = list(class_names)
        if not all(name in self.values for name in names):
            return None
        return LabelTable({name: self.values[name] for name in names}, self.unlabelled)

    def features(self) -> dict[str, list]:
        """Columns for a napari Labels layer's ``features``: one row per value, the
        unlabelled value first ("background" when it is 0, else "unlabelled")."""
        rows = sorted(self.values.items(), key=lambda item: item[1])
        unlabelled = "background" if self.unlabelled == 0 else "unlabelled"
        return {
            "index": [self.unlabelled] + [value for _, value in rows],
            "class": [unlabelled] + [name for name, _ in rows],
        }


# The unlabelled value of an output whose classes include label 0: the ignore value when
# there is one, else 255 (the VOC convention), else one above the largest class value.
_UNLABELLED_WITHOUT_BACKGROUND = 255


def _unlabelled_value(background: bool, ignore_index: int | None, values: Mapping[str, int]) -> int:
    used = set(values.values())
    if background and 0 not in used:
        return 0
    if ignore_index is not None and ignore_index not in used:
        return ignore_index
    if _UNLABELLED_WITHOUT_BACKGROUND not in used:
        return _UNLABELLED_WITHOUT_BACKGROUND
    return max(used) + 1


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"class names must be non-empty strings, got {name!r}")
    return name.strip()


def _check_mapping(mapping: Mapping[Any, str], background: bool = True) -> dict[int, str]:
    if not mapping:
        raise ValueError("the class map is empty; map at least one label value to a name")
    checked: dict[int, str] = {}
    for key, name in mapping.items():
        try:
            value = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"label values must be integers, got {key!r}") from None
        if value < 0 or (value == 0 and background):
            raise ValueError(
                f"label value {value} cannot be a class: 0 is background, values are positive "
                "(for label maps where 0 is a class, say there is no background)"
            )
        if value in checked:
            raise ValueError(f"label value {value} appears twice in the class map")
        checked[value] = _check_name(name)
    return dict(sorted(checked.items()))


def _check_ignore_index(
    ignore_index: Any, mapping: Mapping[int, str], background: bool
) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise ValueError(f"the ignore value must be an integer label value, got {ignore_index!r}")
    value = int(ignore_index)
    if value < 0:
        raise ValueError(f"the ignore value must be a label value >= 0, got {value}")
    if value in mapping:
        raise ValueError(
            f"label value {value} is both the ignore value and the class {mapping[value]!r}"
        )
    if value == 0 and background:
        raise ValueError(
            "the ignore value cannot be 0 while 0 is background; say there is no background "
            "to train only on the painted pixels"
        )
    return value


# --------------------------------------------------------------------------- text forms


def _entries(text: str) -> list[str]:
    """Typed entries: split at commas, semicolons and new lines, blanks collapsed."""
    return [" ".join(entry.split()) for entry in _ENTRY_SEPARATORS.split(text) if entry.strip()]


def parse_class_names(text: str) -> list[str]:
    """``"nucleus, cell"`` -> ``["nucleus", "cell"]`` (blank entries and repeats dropped)."""
    return list(dict.fromkeys(_entries(text)))


def parse_class_map(
    text: str, *, background: bool = True, ignore_index: int | None = None
) -> ClassMap:
    """``"1=nucleus, 2+3=cell"`` -> a ClassMap (values 2 and 3 are both "cell").

    A name in two entries is refused (usually a typo); values of one class go in one entry.
    With ``background=False`` label 0 may be a class (``"0=pore, 1=clay"``).

    Raises:
        ValueError: an entry is not ``VALUE[+VALUE...]=NAME``, a value is not a positive
            integer (or 0 without background), or a value or a name appears twice.
    """
    mapping: dict[int, str] = {}
    owners: dict[str, str] = {}
    entries = _entries(text)
    if not entries:
        raise ValueError("The class map is empty: write e.g. '1=nucleus, 2=cell'.")
    for entry in entries:
        values_text, sep, name = (part.strip() for part in entry.partition("="))
        if not sep or not values_text or not name:
            raise ValueError(f"Class map entry {entry!r} is not VALUE=NAME (e.g. 1=nucleus).")
        values = [_label_value(v, background) for v in values_text.split(_VALUE_JOIN)]
        for value in values:
            if value in mapping:
                raise ValueError(f"Class map: label value {value} is given twice.")
            mapping[value] = name
        joined = _VALUE_JOIN.join(map(str, values))
        if name in owners:
            raise ValueError(
                f"Class map: the name {name!r} is given to label values {owners[name]} and "
                f"{joined}; if they are one class, write one entry "
                f"({owners[name]}{_VALUE_JOIN}{joined}={name}), else give each class its own "
                "name."
            )
        owners[name] = joined
    return ClassMap(mapping, background=background, ignore_index=ignore_index)


def _label_value(text: str, background: bool = True) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"Class map: label value {text.strip()!r} is not an integer.") from None
    if value < 0 or (value == 0 and background):
        raise ValueError(
            f"Class map: label value {value} must be positive (0 is background; when label 0 "
            "is a class, say there is no background)."
        )
    return value


def format_class_map(class_map: ClassMap) -> str:
    """The text form :func:`parse_class_map` reads back, e.g. ``"1=nucleus,2+3=cell"``.

    Raises:
        ValueError: a single-class map (it has no values to write).
    """
    if class_map.is_single_class:
        raise ValueError("a single-class map has no label values to write")
    return ",".join(
        f"{_VALUE_JOIN.join(map(str, class_map.values_of(name) or ()))}={name}"
        for name in class_map.class_names
    )
