"""Every subcommand's --help documents every option and ends with real examples
(issue 20, point 5). Options made from registries (flow methods, model options) are
held to the same rule."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mexkit.cli import COMMANDS, cli


def command(name: str) -> click.Command:
    ctx = click.Context(cli)
    cmd = cli.get_command(ctx, name)
    assert cmd is not None, name
    return cmd


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help(name):
    cmd = command(name)
    missing = [p.opts[0] for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert not missing, f"mexkit {name}: options without help: {', '.join(missing)}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_ends_with_examples(name):
    cmd = command(name)
    assert cmd.epilog and cmd.epilog.startswith("\b\nExamples:"), \
        f"mexkit {name} has no 'Examples' epilog (a \\b paragraph, so click keeps its lines)"
    r = CliRunner().invoke(cli, [name, "--help"])
    assert r.exit_code == 0, r.output
    tail = r.output[r.output.rindex("Examples:"):]
    examples = [ln.strip() for ln in cmd.epilog.splitlines()[2:] if ln.strip()]
    assert any(ln.startswith(f"mexkit {name} ") or f"| mexkit {name} " in ln
               for ln in examples), f"mexkit {name}: no example runs it"
    for ln in examples:  # printed as written, not rewrapped
        assert ln in tail, f"mexkit {name} --help rewrapped {ln!r}"


def test_examples_use_options_that_exist():
    """Every `mexkit X ...` in every epilog uses only options that X has."""
    known = {name: {o for p in command(name).params for o in (*p.opts, *p.secondary_opts)}
             for name in COMMANDS}
    for name in sorted(COMMANDS):
        text = command(name).epilog.replace("\\\n", " ")
        for line in text.splitlines():
            words = line.split()
            for start in [i for i in range(len(words) - 1)
                          if words[i] == "mexkit" and words[i + 1] in COMMANDS]:
                other = words[start + 1]
                for w in words[start + 2:]:
                    if w in ("|", "&&", "#", ">"):
                        break
                    if w.startswith("-") and w != "-":
                        assert w.split("=")[0] in known[other], \
                            f"mexkit {name} --help: mexkit {other} has no {w}: {line}"
