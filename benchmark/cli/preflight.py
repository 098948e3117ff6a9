"""Checks made before any work: directories, ``--include`` files, the methods a run trains, the task data, the
result store's format.

A run reads and checks everything it was given here, before a model loads, so that bad input costs one line and
exit code 2 and leaves the output directory as it was: nothing in this module writes a file. Each failure is a
:class:`~benchmark.config.UsageError` naming the flag or file, the bad value and what would be accepted.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmark.config import Settings, UsageError
from benchmark.core.files import describe_os_error
from benchmark.core.registry import Registry, RegistryError
from benchmark.store import (
    REFERENCE_METHODS,
    STORE_FORMAT,
    Store,
    failure_reason,
    usable_name,
)

# Method names that already mean something on the command line or in the store.
RESERVED_METHOD_NAMES = (*REFERENCE_METHODS, "all", "none")


def directory(value: str, flag: str, *, must_exist: bool = False, writable: bool = False) -> Path:
    """``value`` as a directory: an existing one, or (unless ``must_exist``) a path to create one at below an
    existing directory. ``writable``: this process may write there. Creates nothing."""
    if not value:
        raise UsageError(f"{flag} '': expected a directory path")
    path = Path(value)
    existing = next(p for p in (path, *path.parents) if os.path.lexists(p))  # "." or "/" at the latest
    if must_exist and existing != path:
        raise UsageError(f"{flag} {value!r} does not exist; expected an existing directory")
    if not existing.is_dir():
        problem = "is not a directory" if existing == path else f"cannot be created: {str(existing)!r} is a file"
        raise UsageError(f"{flag} {value!r} {problem}; expected a directory")
    longest = os.pathconf(existing, "PC_NAME_MAX")
    for name in path.parts[len(existing.parts):]:  # the directories still to create
        if len(os.fsencode(name)) > longest:
            raise UsageError(f"{flag} {value!r}: a name of {len(os.fsencode(name))} bytes; expected names of at most "
                             f"{longest} bytes (this file system's limit)")
    mode, wanted = (os.R_OK | os.W_OK | os.X_OK, "write to") if writable else (os.R_OK | os.X_OK, "read")
    if not os.access(existing, mode):  # no permission, or a read-only file system
        raise UsageError(f"{flag} {value!r}: cannot {wanted} {str(existing)!r}; expected a directory you can "
                         f"{wanted}")
    return path


def methods_with_includes(include: Sequence[str]) -> Registry[Any]:
    """The method registry: the built-in and entry-point methods, then each ``--include`` file (each file once),
    which must run, register at least one method, and register only methods a run can use."""
    from methods.registry import ENTRY_POINT_GROUP, load_methods

    try:
        methods = load_methods()
    except Exception as error:  # an installed package's entry point: third-party code
        raise UsageError(f"a method package of entry-point group {ENTRY_POINT_GROUP!r} failed to load: "
                         f"{failure_reason(error)}; expected it to import (or uninstall it)") from None
    files: dict[Path, str] = {}
    for value in include:
        files.setdefault(Path(value).resolve(), value)
    for path, value in files.items():
        before = set(methods.names())
        _include(value, path)
        added = [name for name in methods.names() if name not in before]
        if not added:
            raise UsageError(f"--include {value!r} registers no method; expected a Method subclass decorated with "
                             "@METHODS.register('name') (from methods.registry import METHODS)")
        for name in added:
            _check_method_class(methods, name, f"--include {value!r}: method {name!r}")
    return methods


def _include(value: str, path: Path) -> None:
    from methods.registry import include_file

    if not value or Path(value).suffix != ".py" or not path.is_file():
        raise UsageError(f"--include {value!r}: expected an existing .py file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"--include {value!r}: no permission to read it")
    try:
        include_file(path)
    except SyntaxError as error:
        raise UsageError(f"--include {value!r}, line {error.lineno}: {type(error).__name__}: {error.msg}") from None
    except RegistryError as error:
        raise UsageError(f"--include {value!r}: {error}; choose another name") from None
    except (Exception, SystemExit) as error:  # the user's code: whatever it raises is reported, never a traceback
        raise UsageError(f"--include {value!r} failed: {failure_reason(error)}") from None


def _check_method_class(methods: Registry[Any], name: str, where: str) -> None:
    """A method registered by a user's file is usable: its name can name a store directory, and it is a
    :class:`~methods.base.Method` with a dataclass config, whose teacher needs come from ``teacher_request``."""
    from methods.base import Method, MethodConfig

    if not usable_name(name) or name in RESERVED_METHOD_NAMES:
        raise UsageError(f"{where}: expected a name of lowercase letters, digits, '.', '_' and '-' (it names a "
                         f"directory of the result store), other than {', '.join(RESERVED_METHOD_NAMES)}")
    try:
        method = methods.get(name)
    except Exception as error:  # a lazily registered "module:attribute" that does not import
        raise UsageError(f"{where}: {failure_reason(error)}") from None
    if not (isinstance(method, type) and issubclass(method, Method)):
        raise UsageError(f"{where}: registers {method!r}; expected a subclass of methods.base.Method")
    config = method.config_class
    if not (isinstance(config, type) and issubclass(config, MethodConfig) and dataclasses.is_dataclass(config)):
        raise UsageError(f"{where}: config_class {config!r}; expected a dataclass subclassing MethodConfig")
    if hasattr(method, "teacher_needs"):  # the class attribute of earlier releases, which nothing reads any more
        raise UsageError(f"{where}: sets teacher_needs; expected a teacher_request() method returning a "
                         "methods.base.TeacherRequest")


def check_methods(methods: Registry[Any], configs: Mapping[str, Any], settings: Settings, pairs: Sequence[Any],
                  named: Sequence[str]) -> None:
    """Each method of the run can be built with its config and gets the teacher signal it needs; a method named on
    the command line (not through ``all``) that no selected pair can run is an error."""
    for name, config in configs.items():
        try:
            method = methods.get(name)(config)
            request = method.teacher_request()
        except Exception as error:  # a third-party method's constructor or teacher request
            raise UsageError(f"--methods {name}: cannot be built with its config: {failure_reason(error)}") from None
        if request.needs == "topk_logits" and request.topk > settings.teacher.topk:
            raise UsageError(f"--topk {settings.teacher.topk}: method {name!r} reads the teacher's top-"
                             f"{request.topk}; expected --topk >= {request.topk}")
        if method.same_tokenizer_only and name in named and not any(pair.same_tokenizer for pair in pairs):
            raise UsageError(f"--methods {name}: needs a pair whose teacher and student share one tokenizer; none of "
                             f"--pairs {' '.join(pair.name for pair in pairs)} does (e.g. tiny-gpt2-to-gpt2)")


def load_task_data(names: Sequence[str], data_dir: Path, settings: Settings) -> dict[str, Any]:
    """The selected tasks' adapters with both splits parsed (once: the run reuses them). A missing or malformed
    file is one line naming the file, the line or record and the field; an empty split, or fewer training examples
    than the prompts' shots, is an error too."""
    from benchmark.run.context import teacher_shot_count
    from tasks.base import SPLITS, DataError
    from tasks.registry import load_tasks

    adapters = {}
    for name in names:
        try:
            task = load_tasks().get(name)(data_dir)
            splits = {split: task.load(split) for split in SPLITS}  # type: ignore[arg-type]
        except DataError as error:
            raise UsageError(f"task {name}: {error}") from None
        except OSError as error:
            raise UsageError(f"task {name}: {describe_os_error(error)}") from None
        for split, examples in splits.items():
            if not examples:
                raise UsageError(f"task {name}: its {split} split has no examples (read from {str(task.data_dir)!r})")
        for flag, shots in (("--student-shots", settings.prompt.student_shots),
                            ("--teacher-shots", teacher_shot_count(task, settings))):
            if shots > len(splits["train"]):
                raise UsageError(f"{flag} {shots}: expected at most {len(splits['train'])}, the examples of the "
                                 f"{name} train split the shots come from")
        adapters[name] = task
    return adapters


def check_store_format(root: Path, flag: str) -> None:
    """A result store holding cells of a newer store format belongs to a newer version of the suite: a run here
    would take them for damaged ones and run them again."""
    newer = Store(root).newer_format_cells() if root.is_dir() else []
    if newer:
        raise UsageError(f"{flag} {str(root)!r} holds cells written by a newer version of the suite ({len(newer)}, "
                         f"e.g. {newer[0]}; this version writes store format {STORE_FORMAT}); expected another "
                         f"{flag}, or that version")
