"""Generate uringsync's man page and its bash and zsh completions from the
CLI's own command tree and help (the typer app in uringsync/cli.py, as click
sees it), so they cannot drift from ``--help``.

    python build_share.py OUTDIR               # from the checkout (make share)
    python build_share.py --lib BUILD_LIB OUTDIR  # setup.py: the package just built

writes ``OUTDIR/man/man1/uringsync.1``,
``OUTDIR/bash-completion/completions/uringsync`` and
``OUTDIR/zsh/site-functions/_uringsync``.  setup.py runs it after the
extension is built (the CLI imports it) and installs the three files under the
prefix's ``share/`` and in the package as ``uringsync/share/``.

A command that parses its own options (``cp``, ``sync``: click passes their
arguments through) appears in the man page with its whole help text as it is;
its options, for the completions, are read from that text.  Every other
command's options come from its click parameters.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -x or --long-name, not inside a word, a path or a quoted name; "=" or "[="
# after a long one means it takes a value
_OPT = re.compile(
    r"(?<![\w.'$-])(--[A-Za-z0-9][A-Za-z0-9-]*(?:\[?=|(?![\w-]))|-[A-Za-z0-9](?![\w-]))"
)
# an option line of a help text: "  -a, --archive    what it does"
_OPT_LINE = re.compile(r"^\s{1,8}(-\S.*?)(?:\s{2,}(\S.*))?$")


@dataclass
class Option:
    names: list[str]  # "-j", "--jobs", "--no-keep"
    takes_value: bool
    help: str = ""
    choices: list[str] = field(default_factory=list)


@dataclass
class CommandDoc:
    name: str
    short_help: str
    help: str  # the command's help as the CLI prints it in its description
    usage: str  # "[OPTIONS] [SRC] DST"
    options: list[Option]
    help_records: list[tuple[str, str]]  # (options column, help), as --help lists them
    passthrough: bool  # parses its own options: its help is its whole manual


def _plain(text: str) -> str:
    """click's help text without its no-rewrap markers (a line holding only \\b)."""
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b")


def options_from_help(text: str) -> list[Option]:
    """The options a help text names, with the first line of what it says of each:
    its option lines first, then any other option it names in passing."""
    found: dict[str, Option] = {}

    def required(token: str) -> bool:  # "--suffix=", not "--backup[="
        return token.endswith("=") and not token.endswith("[=")

    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _OPT_LINE.match(line)
        if m:
            tokens = _OPT.findall(m.group(1))
            short_value = re.search(r"(?:^|\s)-[A-Za-z0-9] [A-Z]", m.group(1))
            what = m.group(2)
            if what is None and i + 1 < len(lines) and lines[i + 1].startswith(" " * 12):
                what = lines[i + 1]  # a long option's description starts on the next line
            opt = Option(
                [t.rstrip("[=") for t in tokens],
                any(required(t) for t in tokens) or bool(short_value),
                (what or "").strip(),
            )
            for n in opt.names:
                found.setdefault(n, opt)
    for line in lines:
        for token in _OPT.findall(line):
            found.setdefault(token.rstrip("[="), Option([token.rstrip("[=")], required(token)))
    unique: list[Option] = []
    for opt in found.values():
        if not any(opt is u for u in unique):
            unique.append(opt)
    return unique


def _usage(name: str, help_text: str) -> str:
    """A pass-through command's usage lines, from its help ("Usage: uringsync cp ...",
    "  or:  uringsync cp ...", or "uringsync sync [OPTIONS] SRC... DST" in its first line)."""
    forms = re.findall(rf"^\s*(?:Usage:|or:)\s+uringsync {name} (.*)$", help_text, re.M)
    if not forms:
        m = re.search(rf"uringsync {name} ([^\n]*?)\.?$", help_text.split("\n")[0])
        forms = [m.group(1)] if m else ["[OPTIONS]"]
    return "\n".join(forms)


@functools.cache
def command_tree() -> tuple[str, list[tuple[str, str]], list[CommandDoc]]:
    """(the program's help, its own options' help records, its commands)."""
    import typer.main

    from uringsync.cli import app

    root = typer.main.get_command(app)
    ctx: Any = root.context_class(root, info_name="uringsync", **root.context_settings)
    records = [r for p in root.get_params(ctx) if (r := p.get_help_record(ctx))]
    commands = []
    for name in root.list_commands(ctx):  # type: ignore[attr-defined]
        cmd = root.get_command(ctx, name)  # type: ignore[attr-defined]
        if cmd is None or cmd.hidden:
            continue
        sub: Any = cmd.context_class(cmd, info_name=name, parent=ctx, **cmd.context_settings)
        help_text = _plain(cmd.help or "")
        passthrough = bool(cmd.context_settings.get("allow_extra_args"))
        options: list[Option] = []
        help_records: list[tuple[str, str]] = []
        if passthrough:
            options = options_from_help(help_text)
        else:
            for p in cmd.get_params(sub):
                record = p.get_help_record(sub)
                if record:
                    help_records.append(record)
                if p.param_type_name != "option":
                    continue
                flag = bool(getattr(p, "is_flag", False) or getattr(p, "count", False))
                choices = [str(c) for c in getattr(getattr(p, "type", None), "choices", ())]
                if not choices and p.metavar and "|" in p.metavar:
                    choices = p.metavar.split("|")
                first = (getattr(p, "help", None) or "").split(". ")[0].strip()
                options.append(Option([*p.opts, *p.secondary_opts], not flag, first, choices))
        commands.append(
            CommandDoc(
                name=name,
                short_help=cmd.get_short_help_str(limit=70),
                help=help_text,
                usage=_usage(name, help_text)
                if passthrough
                else " ".join(cmd.collect_usage_pieces(sub)),
                options=options,
                help_records=help_records,
                passthrough=passthrough,
            )
        )
    return _plain(root.help or ""), records, commands


# ----------------------------------------------------------------- man page


def _roff(text: str) -> str:
    """One line of text for roff: backslashes and minus signs escaped, a
    leading control character neutralized."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _paragraphs(text: str) -> list[str]:
    """Filled text as roff paragraphs; an indented line keeps its line (.nf)."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        out.append(".PP")
        if any(line.startswith(" ") for line in lines):
            out += [".nf", *(_roff(line) for line in lines), ".fi"]
        else:
            out += [_roff(line) for line in lines]
    return out


def _record(opts: str, help_: str) -> list[str]:
    bold = re.sub(r"(\\-\\-?[\w\\-]+|\\-\w)", r"\\fB\1\\fR", _roff(opts))
    return [".TP", bold, _roff(help_) if help_ else "\\&"]


def man_page(version: str) -> str:
    root_help, root_records, commands = command_tree()
    first, _, rest = root_help.partition("\n")
    name_line = first.rstrip(".")
    name_line = name_line[:1].lower() + name_line[1:]
    lines = [
        f".\\\" uringsync {version}: generated by build_share.py from the CLI's help; do not edit",
        f'.TH URINGSYNC 1 "" "uringsync {version}" "User Commands"',
        ".nh",
        ".ad l",
        ".SH NAME",
        f"uringsync \\- {_roff(name_line)}",
        ".SH SYNOPSIS",
        ".nf",
        *(f"\\fBuringsync {c.name}\\fR {_roff(u)}" for c in commands for u in c.usage.split("\n")),
        "\\fBuringsync\\fR \\-\\-version",
        ".fi",
        ".SH DESCRIPTION",
        _roff(first),
        *_paragraphs(rest),
        ".SH OPTIONS",
        *(line for r in root_records for line in _record(*r)),
        ".SH COMMANDS",
    ]
    for c in commands:
        lines += [f'.SS "uringsync {c.name}"']
        if c.passthrough:
            # its own help, verbatim: usage, every option, notes, examples
            lines += [".nf", *(_roff(line) for line in c.help.splitlines()), ".fi"]
            continue
        lines += [".nf", f"\\fBuringsync {c.name}\\fR {_roff(c.usage)}", ".fi"]
        lines += _paragraphs(c.help)
        lines += [".PP", "Options:"]
        for r in c.help_records:
            lines += _record(*r)
    lines += [
        ".SH SEE ALSO",
        "\\fBcp\\fR(1), \\fBrsync\\fR(1), \\fBxxh128sum\\fR(1), \\fBio_uring\\fR(7)",
        ".PP",
        "Every command prints its help with \\fB\\-\\-help\\fR.",
    ]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------- completions


def _words(names: list[str]) -> str:
    return " ".join(shlex.quote(n) for n in names)


def bash_completion() -> str:
    _, root_records, commands = command_tree()
    root_opts = [n for opts, _ in root_records for n in re.findall(r"--?[\w-]+", opts)]
    cases, value_cases = [], []
    for c in commands:
        words = []
        for o in c.options:
            words += [n + "=" if o.takes_value and n.startswith("--") else n for n in o.names]
            if o.takes_value and o.choices:
                value_cases.append(
                    f"        {' | '.join(f'{c.name}:{n}' for n in o.names)})\n"
                    f'            COMPREPLY=($(compgen -W "{_words(o.choices)}" -- "$cur"))\n'
                    "            return ;;"
                )
        cases.append(f"        {c.name}) opts={shlex.quote(' '.join(words))} ;;")
    names = " ".join(c.name for c in commands)
    return f"""# bash completion for uringsync: generated by build_share.py from the CLI's help
# Loaded by bash-completion from <prefix>/share/bash-completion/completions;
# without it: source this file from ~/.bashrc.
_uringsync() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local cmd="" opts="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
            -*) ;;
            *) cmd=${{COMP_WORDS[i]}}; break ;;
        esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "{names} {" ".join(root_opts)}" -- "$cur"))
        return
    fi
    # a value after --opt=: bash splits at "=" (COMP_WORDBREAKS)
    if [[ $cur == = ]]; then
        cur=""
    elif [[ $prev == = ]]; then
        prev=${{COMP_WORDS[COMP_CWORD-2]}}
    fi
    case $cmd:$prev in
{chr(10).join(value_cases)}
    esac
    case $cmd in
{chr(10).join(cases)}
        *) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        [[ ${{#COMPREPLY[@]}} -eq 1 && ${{COMPREPLY[0]}} == *= ]] && compopt -o nospace 2>/dev/null
    else
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -F _uringsync uringsync
"""


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_spec(word: str, help_: str) -> str:
    return _zsh_quote(word.replace(":", "\\:") + (":" + help_.replace("\n", " ") if help_ else ""))


def zsh_completion() -> str:
    _, root_records, commands = command_tree()
    cmds = " ".join(_zsh_spec(c.name, c.short_help) for c in commands)
    root_opts = " ".join(
        _zsh_spec(n, h) for opts, h in root_records for n in re.findall(r"--?[\w-]+", opts)
    )
    cases = []
    for c in commands:
        flags = " ".join(
            _zsh_spec(n, o.help)
            for o in c.options
            for n in o.names
            if not (o.takes_value and n.startswith("--"))
        )
        valued = " ".join(
            _zsh_spec(n + "=", o.help)
            for o in c.options
            for n in o.names
            if o.takes_value and n.startswith("--")
        )
        cases.append(f"        {c.name}) opts=({flags}); vopts=({valued}) ;;")
    return f"""#compdef uringsync
# zsh completion for uringsync: generated by build_share.py from the CLI's help
# Put this file's directory in $fpath before compinit, e.g. in ~/.zshrc:
#   fpath=(<prefix>/share/zsh/site-functions $fpath); autoload -U compinit; compinit
_uringsync() {{
    local -a commands opts vopts
    commands=({cmds})
    if (( CURRENT == 2 )); then
        if [[ $PREFIX == -* ]]; then
            opts=({root_opts})
            _describe -t options 'option' opts
        else
            _describe -t commands 'uringsync command' commands
        fi
        return
    fi
    case $words[2] in
{chr(10).join(cases)}
        *) return 1 ;;
    esac
    if [[ $PREFIX == -* ]]; then
        _describe -t options 'option' opts -- vopts -S ''
    else
        _files
    fi
}}
_uringsync "$@"
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", help="import uringsync from here (setup.py's build_lib)")
    ap.add_argument("outdir", type=Path)
    args = ap.parse_args(argv)
    if args.lib:
        # in place of this script's directory, which may hold another uringsync
        sys.path[0] = os.path.abspath(args.lib)
    from uringsync._version import __version__

    files = {
        "man/man1/uringsync.1": man_page(__version__),
        "bash-completion/completions/uringsync": bash_completion(),
        "zsh/site-functions/_uringsync": zsh_completion(),
    }
    for name, text in files.items():
        path = args.outdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
