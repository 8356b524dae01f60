"""Readers for the deployment assets: the Dockerfile, kustomizations, PromQL expressions.

Small, deliberately strict parsers: when an asset takes a shape these do not understand,
the tests fail rather than skip it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def load_yaml_documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


# -- Dockerfile ------------------------------------------------------------------------------


@dataclass
class Dockerfile:
    """The final stage of a Dockerfile, as (INSTRUCTION, arguments) pairs in order."""

    instructions: list[tuple[str, str]]

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        logical: list[str] = []
        pending = ""
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not pending and (not line or line.startswith("#")):
                continue
            if pending and line.startswith("#"):
                continue  # comments inside a continued instruction are dropped by Docker too
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            logical.append(pending + line)
            pending = ""
        assert not pending, "Dockerfile ends with a line continuation"
        stage: list[tuple[str, str]] = []
        for line in logical:
            keyword, _, args = line.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                stage = []
            stage.append((keyword, args.strip()))
        return cls(stage)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            words = shlex.split(args)
            if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
                out[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                key, sep, value = word.partition("=")
                assert sep, f"ENV entry without '=': {word!r}"
                out[key] = value
        return out

    def command(self) -> list[str]:
        """ENTRYPOINT + CMD, both required in exec (JSON) form."""
        entrypoint = self.last("ENTRYPOINT")
        cmd = self.last("CMD")
        parts: list[str] = []
        for value in (entrypoint, cmd):
            if value is None:
                continue
            parsed = json.loads(value)
            assert isinstance(parsed, list), f"not exec form: {value!r}"
            parts.extend(str(item) for item in parsed)
        return parts

    def copies(self) -> list[tuple[list[str], str]]:
        """(sources, destination) of every COPY from the build context."""
        out = []
        for args in self.all("COPY"):
            words = shlex.split(args)
            if any(w.startswith("--from") for w in words):
                continue  # from another stage or image, not from the context
            paths = [w for w in words if not w.startswith("--")]
            out.append((paths[:-1], paths[-1]))
        return out


def dockerignore_patterns(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``relative`` out (the last matching pattern decides)."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        alternatives = {glob, glob[3:]} if glob.startswith("**/") else {glob}
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in alternatives):
            ignored = not negate
    return ignored


# -- Kubernetes ------------------------------------------------------------------------------


@dataclass
class Kustomization:
    """A kustomization directory: its resources and the files its configMapGenerator reads."""

    directory: Path
    resources: list[dict[str, Any]]
    config_maps: dict[str, dict[str, Path]] = field(default_factory=dict)  # name -> key -> file

    @classmethod
    def read(cls, directory: Path) -> Kustomization:
        spec = load_yaml_documents(directory / "kustomization.yaml")[0]
        resources: list[dict[str, Any]] = []
        for name in spec.get("resources", []):
            path = directory / name
            assert path.is_file(), f"{directory.name}/kustomization.yaml lists a missing resource: {name}"
            resources.extend(load_yaml_documents(path))
        config_maps: dict[str, dict[str, Path]] = {}
        for generator in spec.get("configMapGenerator", []):
            files: dict[str, Path] = {}
            for entry in generator.get("files", []):
                key, sep, file = str(entry).partition("=")
                file_path = directory / (file if sep else key)
                assert file_path.is_file(), f"configMapGenerator file missing: {file_path}"
                files[key if sep else Path(key).name] = file_path
            config_maps[generator["name"]] = files
        return cls(directory, resources, config_maps)

    def of_kind(self, kind: str) -> Iterator[dict[str, Any]]:
        return (doc for doc in self.resources if doc.get("kind") == kind)


def kustomizations() -> list[Path]:
    return sorted(p.parent for p in (DEPLOY / "kubernetes").glob("*/kustomization.yaml"))


def resolve_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's or Service's target port (a number or a container port name) as a number."""
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise AssertionError(f"container {container['name']!r} has no port named {port!r}")


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# -- PromQL ----------------------------------------------------------------------------------

_AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"}) | _AGGREGATIONS | _LABEL_LIST_KEYWORDS

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<matchers>\{[^{}]*\})
    | (?P<range>\[[^\]]*\])
    | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE,
)
_MATCHER = re.compile(r"""([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')""")
_GRAFANA_RANGE_VARIABLE = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval)\}")
_GRAFANA_VARIABLE = re.compile(r"\$\{[A-Za-z0-9_:]+\}|\$[A-Za-z_][A-Za-z0-9_]*")


def substitute_grafana_variables(expr: str) -> str:
    """Turn a Grafana query into plain PromQL: range variables become 5m, others a literal."""
    return _GRAFANA_VARIABLE.sub("x", _GRAFANA_RANGE_VARIABLE.sub("5m", expr))


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: frozenset[str]


def selectors(expr: str) -> list[Selector]:
    """Every metric selector in a PromQL expression, with the label names it matches on."""
    tokens = [
        (m.lastgroup or "", m.group())
        for m in _TOKEN.finditer(substitute_grafana_variables(expr))
        if m.lastgroup != "space"
    ]
    out: list[Selector] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in _LABEL_LIST_KEYWORDS and following[1] == "(":
            # by (a, b) / on (route) ...: a list of label names, not metrics
            close = next(i for i in range(index + 1, len(tokens)) if tokens[i][1] == ")")
            index = close + 1
            continue
        if kind == "ident" and text not in _KEYWORDS and following[1] != "(":
            labels: frozenset[str] = frozenset()
            if following[0] == "matchers":
                labels = frozenset(name for name, _ in _MATCHER.findall(following[1]))
                index += 1
            out.append(Selector(text, labels))
        elif kind == "matchers" and (index == 0 or tokens[index - 1][0] != "ident"):
            raise AssertionError(f"selector without a metric name is not supported here: {text}")
        index += 1
    return out


_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$"
)


def grafana_variable_query(query: str) -> tuple[list[Selector], str | None]:
    """The selectors of a Grafana ``label_values(selector, label)`` variable query, and the label."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        return selectors(query), None
    selector = match.group("selector")
    return (selectors(selector) if selector else []), match.group("label")
