"""Build function images: base → shared dependency layer → thin function layer, all cached.

* The **dependency image** ``aquatope/deps:<key>`` holds the union of the functions'
  ``requirements.txt``, installed from wheels downloaded on the host (the build container
  runs with no network and the wheel directory mounted read-only, then is committed, so
  the wheels never end up in a layer). Its key hashes the base image id and the
  requirement set; functions without requirements use the base image directly.
* Each **function image** (``spec.image``, default ``aquatope/<name>:latest``) adds the
  runner and the handler directory; its ``io.aquatope.source-hash`` label hashes exactly
  those files and the base image, so a second build of an unchanged function is a no-op.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.core.errors import DeployError
from testbed.core.platform import FunctionSpec
from testbed.gateway.runtimes.images.base import BaseImage, ensure_base_image, image_lock
from testbed.gateway.runtimes.images.context import (
    APP_DIR,
    handler_files,
    runner_files,
    shared_files,
    source_hash,
    write_context,
)
from testbed.gateway.runtimes.images.engine import (
    LABEL_FUNCTION,
    LABEL_MANAGED,
    LABEL_ROLE,
    connect_engine,
    engine_errors,
)
from testbed.gateway.runtimes.images.wheels import (
    ensure_wheels,
    read_requirements,
    requirements_key,
)

if TYPE_CHECKING:
    import docker

__all__ = ["ImageBuild", "ImageBuilder", "image_ref"]

LABEL_SOURCE_HASH = "io.aquatope.source-hash"
_LABEL_BASE = "io.aquatope.base-id"
_LABEL_REQUIREMENTS = "io.aquatope.requirements"
Log = Callable[[str], None]


def image_ref(spec: FunctionSpec) -> str:
    """The image a function runs: ``spec.image`` or ``aquatope/<name>:latest``."""
    ref = spec.image or f"aquatope/{spec.name}:latest"
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in last else f"{ref}:latest"


@dataclass(frozen=True)
class ImageBuild:
    """The outcome of building one function image."""

    function: str
    image: str
    source_hash: str
    cached: bool
    duration_s: float


class ImageBuilder:
    """Builds and caches function images on the local engine. Thread-safe; one per process.

    Args:
        client: a Docker client (default: :func:`connect_engine`).
        log: receives one-line progress messages.
        allow_pull: try ``python:3.11-slim`` from a registry before building a base.
    """

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        log: Log = lambda _msg: None,
        allow_pull: bool = True,
    ) -> None:
        self._client = client or connect_engine()
        self._log = log
        self._allow_pull = allow_pull
        self._base: BaseImage | None = None
        self._lock = threading.RLock()

    def base(self) -> BaseImage:
        """The base image (built or pulled on first use)."""
        with self._lock:
            if self._base is None:
                self._base = ensure_base_image(
                    self._client, log=self._log, allow_pull=self._allow_pull
                )
            return self._base

    def exists(self, ref: str) -> bool:
        """Whether the image ``ref`` is present on the engine."""
        return self._exists(ref) is not None

    def _exists(self, ref: str) -> docker.models.images.Image | None:
        import docker.errors

        try:
            with engine_errors(f"inspect image {ref}"):
                return self._client.images.get(ref)
        except docker.errors.NotFound:
            return None
        except DeployError:
            return None

    # -- dependency layer -------------------------------------------------------------

    def deps_image(self, requirements: Iterable[str]) -> str:
        """The shared dependency image for ``requirements`` (built once, then cached).

        Raises:
            DeployError: wheels could not be fetched or installed.
        """
        lines = sorted(set(requirements))
        base = self.base()
        if not lines:
            return base.ref
        key = requirements_key([base.image_id, *lines], base.python_version)
        ref = f"aquatope/deps:{key}"
        with image_lock("deps"):
            if self._exists(ref) is not None:
                return ref
            wider = self._covering_deps(base, lines)
            if wider is not None:
                return wider
            wheels = ensure_wheels(lines, base.python_version, log=self._log)
            self._log(f"deps: installing {len(lines)} requirement(s) into {ref}")
            self._install_and_commit(base, wheels, ref, lines)
        return ref

    def _covering_deps(self, base: BaseImage, lines: list[str]) -> str | None:
        """An existing dependency image on ``base`` whose requirements include ``lines``."""
        with engine_errors("list dependency images"):
            images = self._client.images.list(filters={"label": f"{LABEL_ROLE}=deps"})
        best: tuple[int, str] | None = None
        for image in images:
            labels = image.labels or {}
            if labels.get(_LABEL_BASE) != base.image_id or not image.tags:
                continue
            try:
                have = set(json.loads(labels.get(_LABEL_REQUIREMENTS, "[]")))
            except ValueError:
                continue
            if set(lines) <= have and (best is None or len(have) < best[0]):
                best = (len(have), image.tags[0])
        return best[1] if best else None

    def _install_and_commit(
        self, base: BaseImage, wheels: Path, ref: str, lines: list[str]
    ) -> None:
        repository, tag = ref.rsplit(":", 1)
        with engine_errors(f"build {ref}"):
            container = self._client.containers.run(
                base.ref,
                [
                    "python3",
                    "-m",
                    "pip",
                    "install",
                    "--no-index",
                    "--no-cache-dir",
                    "--find-links",
                    "/wheels",
                    "--requirement",
                    "/wheels/requirements.txt",
                ],
                volumes={str(wheels): {"bind": "/wheels", "mode": "ro"}},
                environment={
                    "PIP_BREAK_SYSTEM_PACKAGES": "1",
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                },
                network_mode="none",
                detach=True,
                labels={LABEL_MANAGED: "1", LABEL_ROLE: "build"},
            )
            try:
                result = container.wait()
                if result.get("StatusCode", 1) != 0:
                    tail = bytes(container.logs(tail=6)).decode(errors="replace").strip()
                    raise DeployError(
                        f"installing {lines} into {ref} failed: {' | '.join(tail.splitlines())}"
                    )
                container.commit(
                    repository=repository,
                    tag=tag,
                    conf={
                        "Cmd": ["python3"],
                        "Labels": {
                            LABEL_MANAGED: "1",
                            LABEL_ROLE: "deps",
                            "io.aquatope.python": base.python_version,
                            _LABEL_BASE: base.image_id,
                            _LABEL_REQUIREMENTS: json.dumps(lines),
                        },
                    },
                )
            finally:
                container.remove(force=True)

    # -- function layer ---------------------------------------------------------------

    def _sources(self, spec: FunctionSpec) -> tuple[dict[str, Path], dict[str, Path]]:
        if not spec.handler:
            raise DeployError(f"{spec.name}: no handler directory to build an image from")
        handler_dir = Path(spec.handler)
        if not (handler_dir / "handler.py").is_file():
            raise DeployError(f"{spec.name}: {handler_dir} has no handler.py")
        return {**runner_files(), **shared_files(handler_dir)}, handler_files(handler_dir)

    def source_hash(self, spec: FunctionSpec) -> str:
        """The content hash a current image of ``spec`` carries."""
        runner, handler = self._sources(spec)
        return source_hash(name=spec.name, base_id=self.base().image_id, groups=(runner, handler))

    def is_current(self, spec: FunctionSpec) -> bool:
        """Whether ``image_ref(spec)`` exists and was built from the current sources."""
        image = self._exists(image_ref(spec))
        if image is None:
            return False
        return (image.labels or {}).get(LABEL_SOURCE_HASH) == self.source_hash(spec)

    def build(self, specs: Iterable[FunctionSpec], *, force: bool = False) -> list[ImageBuild]:
        """Build the images of ``specs`` over one shared dependency image; skip current ones.

        Args:
            specs: functions with a ``handler`` directory (holding ``handler.py`` and an
                optional ``requirements.txt``).
            force: rebuild the function layers even when current, without the engine's
                build cache (the dependency image is still reused).

        Returns:
            One :class:`ImageBuild` per spec, in order.

        Raises:
            DeployError: a handler is missing, wheels cannot be fetched, a build fails.
            ConfigError: a ``requirements.txt`` uses pip options.
        """
        specs = list(specs)
        plans = []
        for spec in specs:
            runner, handler = self._sources(spec)
            digest = source_hash(
                name=spec.name, base_id=self.base().image_id, groups=(runner, handler)
            )
            plans.append((spec, runner, handler, digest))
        todo = [
            plan
            for plan in plans
            if force
            or ((img := self._exists(image_ref(plan[0]))) is None)
            or (img.labels or {}).get(LABEL_SOURCE_HASH) != plan[3]
        ]
        deps = ""
        if todo:
            # One dependency image for every function given, so a later rebuild of one
            # function reuses it instead of making a second heavy layer.
            union: list[str] = []
            for spec, *_ in plans:
                union += read_requirements(Path(spec.handler) / "requirements.txt")
            deps = self.deps_image(union)
        results = []
        for spec, runner, handler, digest in plans:
            started = time.perf_counter()
            cached = not any(plan[0] is spec for plan in todo)
            if not cached:
                self._build_function(spec, deps, runner, handler, digest, no_cache=force)
            results.append(
                ImageBuild(
                    function=spec.name,
                    image=image_ref(spec),
                    source_hash=digest,
                    cached=cached,
                    duration_s=time.perf_counter() - started,
                )
            )
        return results

    def ensure(self, spec: FunctionSpec) -> str:
        """The image of ``spec``, built now if missing or stale. Returns its reference.

        Calls from several threads (the docker runtime starts replicas of several functions
        at once) take turns: reading the sources parses them with :mod:`ast`, which
        CPython 3.11 does not allow from two threads at once (``SystemError: AST
        constructor recursion depth mismatch``, seen when a soak restarted every replica).
        """
        ref = image_ref(spec)
        with self._lock:
            if not spec.handler:
                image = self._exists(ref)
                if image is None or LABEL_FUNCTION not in (image.labels or {}):
                    raise DeployError(
                        f"{spec.name}: image {ref} is not a local testbed image and no "
                        "handler directory was given; build it with `aquatope build`"
                    )
                return ref
            self.build([spec])
        return ref

    def _build_function(
        self,
        spec: FunctionSpec,
        deps: str,
        runner: dict[str, Path],
        handler: dict[str, Path],
        digest: str,
        *,
        no_cache: bool = False,
    ) -> None:
        ref = image_ref(spec)
        previous = self._exists(ref)
        self._log(f"image: building {ref} ({len(handler)} handler file(s)) on {deps}")
        with tempfile.TemporaryDirectory(prefix=f"aquatope-{spec.name}-") as tmp:
            ctx = Path(tmp)
            write_context(ctx, name=spec.name, deps=deps, runner=runner, handler=handler)
            with engine_errors(f"build image {ref}"):
                self._client.images.build(
                    path=str(ctx),
                    tag=ref,
                    rm=True,
                    forcerm=True,
                    nocache=no_cache,
                    network_mode="none",
                    labels={
                        LABEL_MANAGED: "1",
                        LABEL_ROLE: "function",
                        LABEL_FUNCTION: spec.name,
                        LABEL_SOURCE_HASH: digest,
                        "io.aquatope.app-dir": APP_DIR,
                    },
                )
        if previous is not None:
            self._drop_superseded(str(previous.id), ref)

    def _drop_superseded(self, image_id: str, ref: str) -> None:
        """Remove the image ``ref`` pointed to before a rebuild, unless something uses it."""
        import docker.errors

        current = self._exists(ref)
        if current is None or str(current.id) == image_id:
            return
        try:
            self._client.images.remove(image_id, noprune=False)
        except docker.errors.APIError as exc:  # tagged elsewhere, or a container uses it
            self._log(f"image: kept the previous {ref} ({image_id[:19]}): {exc.explanation}")
