"""The one POSIX-ish shell of the simulator: simulated nodes run SSH commands with it, pods run exec with it.

Language: words with '...' and "..." quoting and backslash escapes, `$NAME`, `${NAME}`, `$?`, `$#`, `$@`,
`$0`..`$9` (no field splitting), `NAME=value` assignments, pipelines (`|`), lists (`;`, newline, `&&`, `||`),
redirections (`[n]>`, `[n]>>`, `[n]<`, `[n]>&m`), comments, and the builtins `exit`, `export`, `cd`, `:`.
Not supported (exit 2 with a message saying so): background jobs, subshells, command substitution and
compound commands (`if`, `for`, `while`, `case`). An unknown command exits 127 with the shell's own message.

Text is `str`; binary data survives as undecodable bytes kept with the "surrogateescape" error handler
(`to_text`/`to_bytes`), so `cat`, pipes, `base64` and `tar` carry any byte.

The text tools every shell here has live at the end (`TEXT_TOOLS`); a node or a pod adds its own commands
(`Shell.commands`) and says how files are read and written (`read_file`, `write_file`).
"""
from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Callable

Stdin = Callable[[], str]
UNSUPPORTED_STATUS = 2
SLEEP_LIMIT_SECONDS = 3600.0        # a simulated `sleep` never outlives an hour (or the client going away)


def to_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass
class Output:
    status: int
    stdout: str = ""
    stderr: str = ""


@dataclass
class Call:
    """One simple command: its words, its input (read on demand), who runs it, and the shell running it."""

    argv: list[str]
    stdin: Stdin
    uid: int
    shell: "Shell"
    shell_name: str = "bash"
    hung_up: Callable[[], bool] = lambda: False     # the client went away: stop, as SIGHUP would
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"

    @property
    def name(self) -> str:
        return self.argv[0].rsplit("/", 1)[-1]

    def path(self, operand: str) -> str:
        """An operand as an absolute, normalised path (relative ones are taken from the working directory)."""
        return normalise(operand if operand.startswith("/") else f"{self.cwd.rstrip('/')}/{operand}")


Command = Callable[[Call], Output]


def normalise(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


class ShellSyntaxError(ValueError):
    pass


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# --- words and tokens --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Word:
    """A word as written: literal pieces and variable references, expanded when the command runs."""

    parts: tuple[tuple[str, str], ...]      # ("lit", text) or ("var", name)
    quoted: bool = False

    def literal(self) -> str | None:
        return "".join(t for k, t in self.parts) if all(k == "lit" for k, _ in self.parts) else None


@dataclass(frozen=True)
class Token:
    kind: str                        # "word", "op" (&& || | ;) or "redir" (> >> < >&)
    text: str = ""
    word: Word | None = None
    fd: int = -1


_OPERATORS = ("&&", "||", "|", ";")
_UNSUPPORTED = {"&": "background job", "(": "subshell", ")": "subshell", "`": "command substitution"}
_COMPOUND = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac", "{", "}"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPECIAL = "?#@*$0123456789"


@dataclass(frozen=True)
class SudoOptions:
    command: list[str]
    non_interactive: bool          # -n
    read_password: bool            # -S


SUDO_USAGE = "usage: sudo [-SnEH] [-p prompt] [-u user] command [arg ...]\n"


def parse_sudo(args: list[str]) -> SudoOptions | Output:
    """sudo's options as sudo(8) reads them (-n, -S, -E, -H, -p PROMPT, -u root, and clusters like -nS);
    an Output is sudo's own complaint."""
    args = list(args)
    read_password = non_interactive = False
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option == "--":
            break
        if option in ("-n", "--non-interactive"):
            non_interactive = True
        elif option in ("-S", "--stdin"):
            read_password = True
        elif option in ("-p", "--prompt", "-u", "--user"):
            value = args.pop(0) if args else ""
            if option in ("-u", "--user") and value not in ("root", "#0"):
                return Output(1, "", f"sudo: unknown user {value}\n")
        elif option.startswith("-p") or option in ("-E", "-H", "--preserve-env"):
            continue
        elif all(flag in "nSEH" for flag in option[1:]):
            non_interactive |= "n" in option
            read_password |= "S" in option
        else:
            return Output(1, "", f"sudo: invalid option -- '{option.lstrip('-')}'\n" + SUDO_USAGE)
    if not args:
        return Output(1, "", SUDO_USAGE)
    return SudoOptions(args, non_interactive, read_password)


def tokenize(line: str) -> list[Token]:
    tokens: list[Token] = []
    parts: list[tuple[str, str]] = []
    in_word = quoted = False
    i = 0

    def lit(text: str) -> None:
        if parts and parts[-1][0] == "lit":
            parts[-1] = ("lit", parts[-1][1] + text)
        else:
            parts.append(("lit", text))

    def end_word() -> None:
        nonlocal in_word, quoted
        if in_word:
            tokens.append(Token("word", word=Word(tuple(parts), quoted)))
            parts.clear()
            in_word = quoted = False

    def variable(at: int) -> int:
        """Reads `$...` at `at`; returns the index after it."""
        nxt = line[at + 1] if at + 1 < len(line) else ""
        if nxt == "(":
            raise ShellSyntaxError("command substitution ($(...)) is not supported")
        if nxt == "{":
            close = line.find("}", at + 2)
            if close < 0:
                raise ShellSyntaxError("bad substitution: missing `}'")
            name = line[at + 2:close]
            if not (_NAME.fullmatch(name) or (len(name) == 1 and name in _SPECIAL)):
                raise ShellSyntaxError(f"${{{name}}}: only plain ${{NAME}} substitution is supported")
            parts.append(("var", name))
            return close + 1
        if nxt and nxt in _SPECIAL:
            parts.append(("var", nxt))
            return at + 2
        match = _NAME.match(line, at + 1)
        if match:
            parts.append(("var", match.group()))
            return match.end()
        lit("$")
        return at + 1

    while i < len(line):
        char = line[i]
        if char in " \t":
            end_word()
            i += 1
        elif char == "\n":
            end_word()
            tokens.append(Token("op", ";"))
            i += 1
        elif char == "#" and not in_word:
            newline = line.find("\n", i)
            i = len(line) if newline < 0 else newline
        elif char == "'":
            close = line.find("'", i + 1)
            if close < 0:
                raise ShellSyntaxError("unexpected EOF while looking for matching `''")
            lit(line[i + 1:close])
            in_word = quoted = True
            i = close + 1
        elif char == '"':
            i += 1
            in_word = quoted = True
            lit("")
            while i < len(line) and line[i] != '"':
                if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in '"\\$`\n':
                    lit(line[i + 1] if line[i + 1] != "\n" else "")
                    i += 2
                elif line[i] == "$":
                    i = variable(i)
                elif line[i] == "`":
                    raise ShellSyntaxError("command substitution (`...`) is not supported")
                else:
                    lit(line[i])
                    i += 1
            if i >= len(line):
                raise ShellSyntaxError('unexpected EOF while looking for matching `"\'')
            i += 1
        elif char == "\\":
            if i + 1 < len(line) and line[i + 1] != "\n":
                lit(line[i + 1])
                in_word = True
            i += 2
        elif char in "<>":
            fd = -1
            if in_word and not quoted and len(parts) == 1 and parts[0][0] == "lit" and parts[0][1].isdigit():
                fd = int(parts[0][1])
                parts.clear()
                in_word = False
            end_word()
            if line.startswith(">>", i):
                op, i = ">>", i + 2
            elif line.startswith(">&", i) or line.startswith("<&", i):
                op, i = ">&", i + 2
            else:
                op, i = char, i + 1
            tokens.append(Token("redir", op, fd=fd if fd >= 0 else (0 if op == "<" else 1)))
        elif any(line.startswith(op, i) for op in _OPERATORS):
            end_word()
            op = next(op for op in _OPERATORS if line.startswith(op, i))
            tokens.append(Token("op", op))
            i += len(op)
        elif char in _UNSUPPORTED:
            raise ShellSyntaxError(f"{_UNSUPPORTED[char]} ({char!r}) is not supported")
        elif char == "$":
            in_word = True
            i = variable(i)
        else:
            lit(char)
            in_word = True
            i += 1
    end_word()
    return tokens


@dataclass
class Redirect:
    fd: int
    op: str                          # ">", ">>", "<", ">&"
    target: Word


@dataclass
class Simple:
    words: list[Word] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.words and not self.redirects


Pipeline = list[Simple]


def parse(line: str) -> list[tuple[str, Pipeline]]:
    """[(how it joins the previous one: ";", "&&" or "||"), pipeline of simple commands]."""
    commands: list[tuple[str, Pipeline]] = []
    joiner, pipeline, current = ";", [], Simple()
    tokens = tokenize(line)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.kind == "word":
            assert token.word is not None
            if not current.words and token.word.literal() in _COMPOUND and not token.word.quoted:
                raise ShellSyntaxError(f"compound commands ({token.word.literal()} ...) are not supported")
            current.words.append(token.word)
        elif token.kind == "redir":
            target = tokens[i + 1] if i + 1 < len(tokens) else None
            if target is None or target.kind != "word" or target.word is None:
                raise ShellSyntaxError("syntax error near unexpected token `newline'")
            current.redirects.append(Redirect(token.fd, token.text, target.word))
            i += 1
        elif token.text == "|":
            if current.empty:
                raise ShellSyntaxError("syntax error near unexpected token `|'")
            pipeline.append(current)
            current = Simple()
        else:
            if current.empty and not pipeline:
                if token.text == ";" and joiner == ";":
                    i += 1
                    continue                 # empty lines and a `;` after a newline
                raise ShellSyntaxError(f"syntax error near unexpected token `{token.text}'")
            if current.empty:
                raise ShellSyntaxError(f"syntax error near unexpected token `{token.text}'")
            pipeline.append(current)
            commands.append((joiner, pipeline))
            current, pipeline, joiner = Simple(), [], token.text
        i += 1
    if not current.empty:
        pipeline.append(current)
    elif pipeline or (commands and joiner in ("&&", "||")):
        raise ShellSyntaxError("syntax error: unexpected end of file")
    if pipeline:
        commands.append((joiner, pipeline))
    return commands


# --- running -------------------------------------------------------------------------------------------------
@dataclass
class _Context:
    env: dict[str, str]
    args: list[str]                  # $0, $1, ...
    uid: int
    shell_name: str
    hung_up: Callable[[], bool]
    cwd: str = "/"
    status: int = 0

    def value(self, name: str) -> str:
        if name == "?":
            return str(self.status)
        if name == "#":
            return str(max(len(self.args) - 1, 0))
        if name in ("@", "*"):
            return " ".join(self.args[1:])
        if name == "$":
            return "1"
        if name.isdigit():
            index = int(name)
            return self.args[index] if index < len(self.args) else ""
        return self.env.get(name, "")

    def expand(self, word: Word) -> str:
        return "".join(text if kind == "lit" else self.value(text) for kind, text in word.parts)


_SINK, _OUT, _ERR = "/dev/null", "/dev/stdout", "/dev/stderr"


@dataclass
class Shell:
    commands: dict[str, Command] = field(default_factory=dict)
    read_file: Callable[[str, int], str] | None = None              # (path, uid) -> text, raising OSError
    write_file: Callable[[str, str, bool, int], None] | None = None  # (path, text, append, uid), raising OSError
    stat_file: Callable[[str, int], tuple[str, int] | None] | None = None  # (path, uid) -> ("file"|"dir", size)
    installed: Callable[[str], bool] = lambda name: True            # False for a command whose binary is absent
    not_found: str = "{shell}: {command}: command not found"         # bash; busybox sh says "sh: X: not found"
    env: dict[str, str] = field(default_factory=dict)

    def run(self, line: str, stdin: Stdin, uid: int, shell_name: str = "bash",
            hung_up: Callable[[], bool] = lambda: False, args: list[str] | None = None,
            env: dict[str, str] | None = None, cwd: str = "/") -> Output:
        context = _Context(dict(self.env if env is None else env), args or [shell_name], uid, shell_name, hung_up,
                           cwd)
        try:
            commands = parse(line)
        except ShellSyntaxError as exc:
            return Output(UNSUPPORTED_STATUS, "", f"{shell_name}: simulated shell: {exc}\n")
        out, err = [], []
        stdin = _once(stdin)
        try:
            for joiner, pipeline in commands:
                if (joiner == "&&" and context.status != 0) or (joiner == "||" and context.status == 0):
                    continue
                result = self._pipeline(pipeline, stdin, context)
                out.append(result.stdout)
                err.append(result.stderr)
                context.status = result.status
                if hung_up():
                    break
        except _Exit as done:
            context.status = done.status
        return Output(context.status, "".join(out), "".join(err))

    def _pipeline(self, pipeline: Pipeline, stdin: Stdin, context: _Context) -> Output:
        errors: list[str] = []
        result = Output(0)
        source = stdin
        for index, command in enumerate(pipeline):
            try:
                result = self._simple(command, source, context, alone=len(pipeline) == 1)
            except _Exit as done:
                if len(pipeline) == 1:
                    raise
                result = Output(done.status)         # `exit` in a pipeline ends only its own subshell
            errors.append(result.stderr)
            source = (lambda text: lambda: text)(result.stdout)
        return Output(result.status, result.stdout, "".join(errors))

    def _simple(self, command: Simple, stdin: Stdin, context: _Context, alone: bool) -> Output:
        words = [context.expand(w) for w in command.words]
        assignments: dict[str, str] = {}
        while words and not command.words[len(assignments)].quoted and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            assignments[name] = value
        targets: dict[int, str] = {1: _OUT, 2: _ERR}
        for redirect in command.redirects:
            target = context.expand(redirect.target)
            if redirect.op == ">&":
                if target == "-" or not target.isdigit() or int(target) not in targets:
                    return Output(1, "", f"{context.shell_name}: {target}: bad file descriptor\n")
                targets[redirect.fd] = targets[int(target)]
                continue
            path = target if target.startswith("/") else normalise(f"{context.cwd}/{target}")
            if redirect.op == "<":
                try:
                    text = self._read(path, context.uid)
                except OSError as exc:
                    return Output(1, "", f"{context.shell_name}: can't open '{target}': {_reason(exc)}\n")
                stdin = (lambda text: lambda: text)(text)
                continue
            if path not in (_SINK, _OUT, _ERR):
                try:
                    self._write(path, "", redirect.op == ">>", context.uid)
                except OSError as exc:
                    return Output(1, "", f"{context.shell_name}: can't create {target}: {_reason(exc)}\n")
            targets[redirect.fd] = path
        if not words:
            context.env.update(assignments)
            return Output(0)
        env = {**context.env, **assignments} if assignments else context.env
        result = self._builtin(words, context, alone) or self.execute(
            words, stdin, context.uid, context.shell_name, context.hung_up, env=env, cwd=context.cwd)
        out, err = [], []
        for fd, text in ((1, result.stdout), (2, result.stderr)):
            where = targets.get(fd, _OUT)
            if not text or where == _SINK:
                continue
            if where == _OUT:
                out.append(text)
            elif where == _ERR:
                err.append(text)
            else:
                try:
                    self._write(where, text, True, context.uid)
                except OSError as exc:
                    err.append(f"{context.shell_name}: write error: {_reason(exc)}\n")
        return Output(result.status, "".join(out), "".join(err))

    def _builtin(self, words: list[str], context: _Context, alone: bool) -> Output | None:
        name, args = words[0], words[1:]
        if name == "exit":
            if args and not args[0].lstrip("-").isdigit():
                raise _Exit(2)
            raise _Exit((int(args[0]) if args else context.status) & 0xFF)
        if name == "export":
            for arg in args:
                key, eq, value = arg.partition("=")
                if eq:
                    context.env[key] = value
            return Output(0)
        if name == ":":
            return Output(0)
        if name == "cd":
            target = args[0] if args else context.env.get("HOME", "/")
            context.cwd = target if target.startswith("/") else normalise(f"{context.cwd}/{target}")
            return Output(0)
        return None

    def execute(self, argv: list[str], stdin: Stdin, uid: int, shell_name: str = "bash",
                hung_up: Callable[[], bool] = lambda: False, env: dict[str, str] | None = None,
                cwd: str = "/") -> Output:
        call = Call(argv, stdin, uid, self, shell_name, hung_up, dict(self.env if env is None else env), cwd)
        command = self.commands.get(call.name) or TEXT_TOOLS.get(call.name)
        if command is None or not self.installed(call.name):
            return Output(127, "", self.not_found.format(shell=shell_name, command=argv[0]) + "\n")
        return command(call)

    def knows(self, name: str) -> bool:
        name = name.rsplit("/", 1)[-1]
        return (name in self.commands or name in TEXT_TOOLS) and self.installed(name)

    def stat(self, path: str, uid: int) -> tuple[str, int] | None:
        """("file" or "dir", size), or None when nothing is there."""
        if path in (_SINK, _OUT, _ERR):
            return ("file", 0)
        if self.stat_file is not None:
            return self.stat_file(path, uid)
        try:
            return ("file", len(to_bytes(self._read(path, uid))))
        except OSError:
            return None

    def _read(self, path: str, uid: int) -> str:
        if path == _SINK:
            return ""
        if self.read_file is None:
            raise FileNotFoundError("No such file or directory")
        return self.read_file(path, uid)

    def _write(self, path: str, text: str, append: bool, uid: int) -> None:
        if path == _SINK:
            return
        if self.write_file is None:
            raise PermissionError("Read-only file system")
        self.write_file(path, text, append, uid)

    def input_of(self, call: Call, operands: list[str]) -> tuple[str, list[str]]:
        """The text of the file operands (or stdin when there are none), and the errors reading them."""
        if not operands:
            return call.stdin(), []
        texts, errors = [], []
        for path in operands:
            if path == "-":
                texts.append(call.stdin())
                continue
            try:
                texts.append(self._read(call.path(path), call.uid))
            except OSError as exc:
                errors.append(f"{call.name}: {path}: {_reason(exc)}\n")
        return "".join(texts), errors


def _reason(exc: OSError) -> str:
    return str(getattr(exc, "reason", None) or exc.strerror or exc)


def _once(stdin: Stdin) -> Stdin:
    """A script's stdin is consumed once: the first command reading it gets it, later ones get EOF."""
    taken = False

    def read() -> str:
        nonlocal taken
        if taken:
            return ""
        taken = True
        return stdin()
    return read


# --- the shell commands every shell here has -----------------------------------------------------------------
def sh(call: Call) -> Output:
    """`sh -c SCRIPT [NAME [ARG...]]`, `sh FILE`, or `sh` reading its script from stdin."""
    args = call.argv[1:]
    while args and args[0] in ("-e", "-x", "-u", "-eu", "-ex", "-l"):
        args = args[1:]
    if args[:1] == ["-c"]:
        if len(args) < 2:
            return Output(2, "", f"{call.name}: -c: option requires an argument\n")
        script, positional = args[1], args[2:] or [call.name]
        stdin = call.stdin
    elif args:
        try:
            script = call.shell._read(call.path(args[0]), call.uid)
        except OSError as exc:
            return Output(2, "", f"{call.name}: can't open '{args[0]}': {_reason(exc)}\n")
        positional, stdin = args, call.stdin
    else:
        script, positional, stdin = call.stdin(), [call.name], (lambda: "")
    return call.shell.run(script, stdin, call.uid, shell_name=call.name, hung_up=call.hung_up, args=positional,
                          env=call.env, cwd=call.cwd)


def _count_option(call: Call, default: int) -> tuple[int, bool, list[str]] | Output:
    """`-n N`, `-N`, `--lines=N` or `-c N` (bytes): (count, in bytes?, operands)."""
    count, in_bytes, operands, args = default, False, [], call.argv[1:]
    while args:
        arg = args.pop(0)
        if arg in ("-n", "-c") and args:
            value, in_bytes = args.pop(0), arg == "-c"
        elif arg.startswith(("-n", "-c")) and len(arg) > 2:
            value, in_bytes = arg[2:], arg.startswith("-c")
        elif arg.startswith(("--lines=", "--bytes=")):
            value, in_bytes = arg.split("=", 1)[1], arg.startswith("--bytes")
        elif re.fullmatch(r"-\d+", arg):
            value = arg[1:]
        elif arg.startswith("-") and arg != "-":
            return Output(1, "", f"{call.name}: invalid option -- '{arg.lstrip('-')}'\n")
        else:
            operands.append(arg)
            continue
        if not value.lstrip("+-").isdigit():
            what = "bytes" if in_bytes else "lines"
            return Output(1, "", f"{call.name}: invalid number of {what}: '{value}'\n")
        count = abs(int(value))
    return count, in_bytes, operands


def _lines_tool(take: Callable[[list[str], int], list[str]], take_bytes: Callable[[bytes, int], bytes]) -> Command:
    def tool(call: Call) -> Output:
        parsed = _count_option(call, 10)
        if isinstance(parsed, Output):
            return parsed
        count, in_bytes, operands = parsed
        text, errors = call.shell.input_of(call, operands)
        if in_bytes:
            return Output(1 if errors else 0, to_text(take_bytes(to_bytes(text), count)), "".join(errors))
        lines = text.splitlines(keepends=True)
        return Output(1 if errors else 0, "".join(take(lines, count)), "".join(errors))
    return tool


def _grep(call: Call) -> Output:
    flags, patterns, operands, args = set(), [], [], call.argv[1:]
    while args:
        arg = args.pop(0)
        if arg == "-e" and args:
            patterns.append(args.pop(0))
        elif arg == "--":
            operands.extend(args)
            break
        elif arg.startswith("-") and len(arg) > 1:
            for flag in arg[1:]:
                if flag not in "ivcqEFs":
                    return Output(2, "", f"grep: invalid option -- '{flag}'\n")
                flags.add(flag)
        else:
            operands.append(arg)
    if not patterns:
        if not operands:
            return Output(2, "", "Usage: grep [OPTION]... PATTERNS [FILE]...\n")
        patterns.append(operands.pop(0))
    try:
        regexes = [re.compile(re.escape(p) if "F" in flags else p, re.IGNORECASE if "i" in flags else 0)
                   for p in patterns]
    except re.error as exc:
        return Output(2, "", f"grep: {exc}\n")
    text, errors = call.shell.input_of(call, operands)
    matched = [line for line in text.splitlines(keepends=True)
               if any(r.search(line.rstrip("\n")) for r in regexes) != ("v" in flags)]
    status = 0 if matched else 1
    if errors and "s" not in flags:
        status = 2 if not matched else status
    stderr = "" if "s" in flags else "".join(errors)
    if "q" in flags:
        return Output(status, "", stderr)
    if "c" in flags:
        return Output(status, f"{len(matched)}\n", stderr)
    return Output(status, "".join(line if line.endswith("\n") else line + "\n" for line in matched), stderr)


def _wc(call: Call) -> Output:
    options = "".join(a[1:] for a in call.argv[1:] if a.startswith("-") and a != "-")
    if set(options) - set("lwc"):
        return Output(1, "", f"wc: invalid option -- '{(set(options) - set('lwc')).pop()}'\n")
    operands = [a for a in call.argv[1:] if not a.startswith("-") or a == "-"]
    text, errors = call.shell.input_of(call, operands)
    counts = {"l": text.count("\n"), "w": len(text.split()), "c": len(to_bytes(text))}
    chosen = [k for k in "lwc" if k in options] or ["l", "w", "c"]
    values = [str(counts[k]) for k in chosen]
    line = (" ".join(values) if len(values) == 1 else " ".join(v.rjust(7) for v in values))
    suffix = f" {operands[0]}" if len(operands) == 1 and operands[0] != "-" else ""
    return Output(1 if errors else 0, line + suffix + "\n", "".join(errors))


def _echo(call: Call) -> Output:
    args = call.argv[1:]
    newline = not (args and args[0] == "-n")
    if not newline:
        args = args[1:]
    return Output(0, " ".join(args) + ("\n" if newline else ""))


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", '"': '"'}


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        body = match.group(1)
        if body[0] in "01234567":
            return chr(int(body, 8) & 0xFF) if int(body, 8) < 128 else to_text(bytes([int(body, 8) & 0xFF]))
        if body[0] == "x":
            value = int(body[1:], 16)
            return chr(value) if value < 128 else to_text(bytes([value]))
        return _ESCAPES.get(body, "\\" + body)
    return re.sub(r"\\([0-7]{1,3}|x[0-9a-fA-F]{1,2}|.)", one, text)


def _printf(call: Call) -> Output:
    args = call.argv[1:]
    if not args:
        return Output(1, "", "printf: usage: printf format [arguments]\n")
    template, values = _unescape(args[0]), args[1:]
    out: list[str] = []
    spec = re.compile(r"%([-+ 0#]*)(\d*)(?:\.(\d+))?([sdiuxXoc%b])")
    while True:
        consumed = 0

        def fill(match: re.Match[str]) -> str:
            nonlocal consumed
            flags, width, precision, conv = match.groups()
            if conv == "%":
                return "%"
            value = values[consumed] if consumed < len(values) else ""
            consumed += 1
            if conv in "diuxXo":
                number = int(value or "0", 0) if value.strip().lstrip("+-").isalnum() else 0
                text = format(number, {"d": "d", "i": "d", "u": "d", "x": "x", "X": "X", "o": "o"}[conv])
            elif conv == "c":
                text = value[:1]
            elif conv == "b":
                text = _unescape(value)
            else:
                text = value[:int(precision)] if precision else value
            size = int(width or 0)
            return text.ljust(size) if "-" in flags else text.rjust(size, "0" if "0" in flags and conv != "s" else " ")
        out.append(spec.sub(fill, template))
        values = values[consumed:]
        if not values or consumed == 0:
            break
    return Output(0, "".join(out))


def _cat(call: Call) -> Output:
    operands = [a for a in call.argv[1:] if a != "--"]
    text, errors = call.shell.input_of(call, operands)
    return Output(1 if errors else 0, text, "".join(errors))


def _base64(call: Call) -> Output:
    decode, wrap, operands = False, 76, []
    args = call.argv[1:]
    while args:
        arg = args.pop(0)
        if arg in ("-d", "--decode"):
            decode = True
        elif arg == "-w" and args:
            wrap = int(args.pop(0)) if args[0].isdigit() else -1
        elif arg.startswith("-w") and arg[2:].isdigit():
            wrap = int(arg[2:])
        elif arg.startswith("--wrap="):
            wrap = int(arg.split("=", 1)[1])
        elif arg.startswith("-") and arg != "-":
            return Output(1, "", f"base64: invalid option -- '{arg.lstrip('-')}'\n")
        else:
            operands.append(arg)
    if wrap < 0:
        return Output(1, "", "base64: invalid wrap size\n")
    text, errors = call.shell.input_of(call, operands[:1])
    if errors:
        return Output(1, "", "".join(errors))
    if decode:
        compact = re.sub(r"\s", "", text)
        try:
            return Output(0, to_text(base64.b64decode(compact, validate=True)))
        except ValueError:
            return Output(1, "", "base64: invalid input\n")
    encoded = base64.b64encode(to_bytes(text)).decode()
    if wrap == 0:
        return Output(0, encoded)
    lines = [encoded[i:i + wrap] for i in range(0, len(encoded), wrap)] or [""]
    return Output(0, "\n".join(lines) + "\n")


def _digest(algorithm: str) -> Command:
    def tool(call: Call) -> Output:
        operands = [a for a in call.argv[1:] if not a.startswith("-") or a == "-"] or ["-"]
        out, errors = [], []
        for operand in operands:
            text, problems = call.shell.input_of(call, [operand])
            if problems:
                errors.extend(problems)
                continue
            out.append(f"{hashlib.new(algorithm, to_bytes(text)).hexdigest()}  {operand}\n")
        return Output(1 if errors else 0, "".join(out), "".join(errors))
    return tool


def _test(call: Call) -> Output:
    args = call.argv[1:]
    if call.name == "[":
        if not args or args[-1] != "]":
            return Output(2, "", "[: missing ]\n")
        args = args[:-1]
    try:
        return Output(0 if _evaluate(args, call) else 1)
    except ValueError as exc:
        return Output(2, "", f"{call.name}: {exc}\n")


def _evaluate(args: list[str], call: Call) -> bool:
    if not args:
        return False
    if args[0] == "!":
        return not _evaluate(args[1:], call)
    for joiner in ("-o", "-a"):
        if joiner in args[1:-1]:
            at = args.index(joiner, 1)
            before, after = _evaluate(args[:at], call), _evaluate(args[at + 1:], call)
            return (before or after) if joiner == "-o" else (before and after)
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        op, operand = args
        if op == "-z":
            return operand == ""
        if op == "-n":
            return operand != ""
        if op in ("-e", "-f", "-d", "-s", "-r", "-w", "-x"):
            found = call.shell.stat(call.path(operand), call.uid)
            if found is None:
                return False
            kind, size = found
            return {"-d": kind == "dir", "-f": kind == "file", "-s": kind == "file" and size > 0}.get(op, True)
        raise ValueError(f"{op}: unary operator expected")
    if len(args) == 3:
        left, op, right = args
        if op in ("=", "=="):
            return left == right
        if op == "!=":
            return left != right
        numeric = {"-eq": int.__eq__, "-ne": int.__ne__, "-lt": int.__lt__, "-gt": int.__gt__,
                   "-le": int.__le__, "-ge": int.__ge__}
        if op in numeric:
            try:
                return bool(numeric[op](int(left), int(right)))
            except ValueError:
                raise ValueError(f"integer expression expected: {left if not left.lstrip('-').isdigit() else right}") \
                    from None
        raise ValueError(f"{op}: binary operator expected")
    raise ValueError("too many arguments")


def _env(call: Call) -> Output:
    return Output(0, "".join(f"{k}={v}\n" for k, v in call.env.items()))


def _sleep(call: Call) -> Output:
    args = call.argv[1:]
    if not args:
        return Output(1, "", "sleep: missing operand\n")
    total = 0.0
    for arg in args:
        if arg in ("infinity", "inf"):
            total = SLEEP_LIMIT_SECONDS
            continue
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", arg)
        if not match:
            return Output(1, "", f"sleep: invalid number '{arg}'\n")
        total += float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    deadline = time.monotonic() + min(total, SLEEP_LIMIT_SECONDS)
    while not call.hung_up():
        left = deadline - time.monotonic()
        if left <= 0:
            return Output(0)
        time.sleep(min(left, 0.2))
    return Output(143)                       # the client went away: what SIGTERM leaves


TEXT_TOOLS: dict[str, Command] = {
    "sh": sh,
    "echo": _echo,
    "printf": _printf,
    "cat": _cat,
    "true": lambda call: Output(0),
    "false": lambda call: Output(1),
    "head": _lines_tool(lambda lines, n: lines[:n], lambda data, n: data[:n]),
    "tail": _lines_tool(lambda lines, n: lines[-n:] if n else [], lambda data, n: data[-n:] if n else b""),
    "grep": _grep,
    "wc": _wc,
    "base64": _base64,
    "sha256sum": _digest("sha256"),
    "md5sum": _digest("md5"),
    "test": _test,
    "[": _test,
    "env": _env,
    "sleep": _sleep,
}
