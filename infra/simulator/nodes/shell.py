"""The shell a simulated node runs SSH commands with: what bash would do, for a small language.

Supported: words with '...' and "..." quoting and backslash escapes, pipelines (`|`), lists
(`;`, `&&`, `||`), `sh -c`/`bash -c`, and these text tools reading a pipe or a node file: `echo`,
`true`, `false`, `head -n N`, `tail -n N`, `grep [-i -v -c -q -E -F -e P]`, `wc -l`. Not supported
(exit 2 with a message saying so): redirections, background jobs, subshells, variables and command
substitution. An unknown command exits 127 with `bash: <cmd>: command not found`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

Stdin = Callable[[], str]
UNSUPPORTED_STATUS = 2


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
    hung_up: Callable[[], bool] = lambda: False     # the SSH channel closed: stop, as sshd's SIGHUP would

    @property
    def name(self) -> str:
        return self.argv[0].rsplit("/", 1)[-1]


Command = Callable[[Call], Output]


class ShellSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    text: str
    operator: bool = False


_OPERATORS = ("&&", "||", "|", ";")
_UNSUPPORTED = {">": "redirection", "<": "redirection", "&": "background job", "(": "subshell",
                ")": "subshell", "`": "command substitution"}
_EXPANSION = re.compile(r"\$[A-Za-z_{(0-9?#@*!$-]")


def tokenize(line: str) -> list[Token]:
    tokens: list[Token] = []
    word: list[str] = []
    in_word = False
    i = 0

    def end_word() -> None:
        nonlocal in_word
        if in_word:
            tokens.append(Token("".join(word)))
            word.clear()
            in_word = False

    while i < len(line):
        char = line[i]
        if char in " \t\n":
            end_word()
            i += 1
        elif char == "#" and not in_word:
            break
        elif char == "'":
            close = line.find("'", i + 1)
            if close < 0:
                raise ShellSyntaxError("unexpected EOF while looking for matching `''")
            word.append(line[i + 1:close])
            in_word, i = True, close + 1
        elif char == '"':
            i += 1
            in_word = True
            while i < len(line) and line[i] != '"':
                if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in '"\\$`':
                    word.append(line[i + 1])
                    i += 2
                    continue
                if _EXPANSION.match(line, i) or line[i] == "`":
                    raise ShellSyntaxError("variables and command substitution are not supported")
                word.append(line[i])
                i += 1
            if i >= len(line):
                raise ShellSyntaxError('unexpected EOF while looking for matching `"\'')
            i += 1
        elif char == "\\":
            if i + 1 < len(line):
                word.append(line[i + 1])
                in_word = True
            i += 2
        elif any(line.startswith(op, i) for op in _OPERATORS):
            end_word()
            op = next(op for op in _OPERATORS if line.startswith(op, i))
            tokens.append(Token(op, operator=True))
            i += len(op)
        elif char in _UNSUPPORTED:
            raise ShellSyntaxError(f"{_UNSUPPORTED[char]} ({char!r}) is not supported")
        elif _EXPANSION.match(line, i):
            raise ShellSyntaxError("variables and command substitution are not supported")
        else:
            word.append(char)
            in_word = True
            i += 1
    end_word()
    return tokens


def parse(line: str) -> list[tuple[str, list[list[str]]]]:
    """[(how it joins the previous one: ";", "&&" or "||"), pipeline of argv lists]."""
    commands: list[tuple[str, list[list[str]]]] = []
    joiner, pipeline, argv = ";", [], []
    for token in tokenize(line):
        if not token.operator:
            argv.append(token.text)
            continue
        if not argv:
            raise ShellSyntaxError(f"syntax error near unexpected token `{token.text}'")
        pipeline.append(argv)
        argv = []
        if token.text != "|":
            commands.append((joiner, pipeline))
            joiner, pipeline = token.text, []
    if argv:
        pipeline.append(argv)
    elif pipeline or joiner in ("&&", "||"):
        raise ShellSyntaxError("syntax error: unexpected end of file")
    if pipeline:
        commands.append((joiner, pipeline))
    return commands


@dataclass
class Shell:
    commands: dict[str, Command] = field(default_factory=dict)
    read_file: Callable[[str, int], str] | None = None       # (path, uid) -> text, raising OSError
    installed: Callable[[str], bool] = lambda name: True     # False for a command whose binary is absent

    def run(self, line: str, stdin: Stdin, uid: int, shell_name: str = "bash",
            hung_up: Callable[[], bool] = lambda: False) -> Output:
        try:
            commands = parse(line)
        except ShellSyntaxError as exc:
            return Output(UNSUPPORTED_STATUS, "", f"{shell_name}: simulated node: {exc}\n")
        out, err, status = [], [], 0
        for joiner, pipeline in commands:
            if (joiner == "&&" and status != 0) or (joiner == "||" and status == 0):
                continue
            result = self._pipeline(pipeline, stdin, uid, shell_name, hung_up)
            out.append(result.stdout)
            err.append(result.stderr)
            status = result.status
        return Output(status, "".join(out), "".join(err))

    def _pipeline(self, pipeline: list[list[str]], stdin: Stdin, uid: int, shell_name: str,
                  hung_up: Callable[[], bool]) -> Output:
        errors: list[str] = []
        result = Output(0)
        source = stdin
        for argv in pipeline:
            result = self.execute(argv, source, uid, shell_name, hung_up)
            errors.append(result.stderr)
            source = (lambda text: lambda: text)(result.stdout)
        return Output(result.status, result.stdout, "".join(errors))

    def execute(self, argv: list[str], stdin: Stdin, uid: int, shell_name: str = "bash",
                hung_up: Callable[[], bool] = lambda: False) -> Output:
        call = Call(argv, stdin, uid, self, shell_name, hung_up)
        command = self.commands.get(call.name) or TEXT_TOOLS.get(call.name)
        if command is None or not self.installed(call.name):
            return Output(127, "", f"{shell_name}: {argv[0]}: command not found\n")
        return command(call)

    def knows(self, name: str) -> bool:
        name = name.rsplit("/", 1)[-1]
        return (name in self.commands or name in TEXT_TOOLS) and self.installed(name)

    def input_of(self, call: Call, operands: list[str]) -> tuple[str, list[str]]:
        """The text of the file operands (or stdin when there are none), and the errors reading them."""
        if not operands or operands == ["-"]:
            return call.stdin(), []
        texts, errors = [], []
        for path in operands:
            try:
                if self.read_file is None:
                    raise OSError("No such file or directory")
                texts.append(self.read_file(path, call.uid))
            except OSError as exc:
                errors.append(f"{call.name}: {path}: {getattr(exc, 'reason', None) or exc}\n")
        return "".join(texts), errors


# --- text tools ----------------------------------------------------------------------------------------
def _count_option(call: Call, default: int) -> tuple[int, list[str]] | Output:
    count, operands, args = default, [], call.argv[1:]
    while args:
        arg = args.pop(0)
        if arg == "-n" and args:
            value = args.pop(0)
        elif arg.startswith("-n") and len(arg) > 2:
            value = arg[2:]
        elif arg.startswith("--lines="):
            value = arg.split("=", 1)[1]
        elif re.fullmatch(r"-\d+", arg):
            value = arg[1:]
        elif arg.startswith("-") and arg != "-":
            return Output(1, "", f"{call.name}: invalid option -- '{arg.lstrip('-')}'\n")
        else:
            operands.append(arg)
            continue
        if not value.lstrip("+-").isdigit():
            return Output(1, "", f"{call.name}: invalid number of lines: '{value}'\n")
        count = abs(int(value))
    return count, operands


def _lines_tool(take: Callable[[list[str], int], list[str]]) -> Command:
    def tool(call: Call) -> Output:
        parsed = _count_option(call, 10)
        if isinstance(parsed, Output):
            return parsed
        count, operands = parsed
        text, errors = call.shell.input_of(call, operands)
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
    options = [a for a in call.argv[1:] if a.startswith("-")]
    if options != ["-l"]:
        return Output(1, "", "wc: the simulated node supports only `wc -l`\n")
    text, errors = call.shell.input_of(call, [a for a in call.argv[1:] if not a.startswith("-")])
    return Output(1 if errors else 0, f"{text.count(chr(10))}\n", "".join(errors))


def _echo(call: Call) -> Output:
    args = call.argv[1:]
    newline = not (args and args[0] == "-n")
    if not newline:
        args = args[1:]
    return Output(0, " ".join(args) + ("\n" if newline else ""))


TEXT_TOOLS: dict[str, Command] = {
    "echo": _echo,
    "true": lambda call: Output(0),
    "false": lambda call: Output(1),
    "head": _lines_tool(lambda lines, n: lines[:n]),
    "tail": _lines_tool(lambda lines, n: lines[-n:] if n else []),
    "grep": _grep,
    "wc": _wc,
}
