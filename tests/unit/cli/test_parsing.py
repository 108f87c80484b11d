import pytest

from kubenova.cli import events, kubectl_nova, power


def parse(*argv):
    return kubectl_nova.build_parser().parse_args(list(argv))


def test_a_power_verb_takes_the_name_and_waits_five_minutes_by_default():
    options = parse("stop", "web-1")

    assert options.verb == "stop"
    assert options.name == "web-1"
    assert options.no_wait is False
    assert options.timeout == 300.0
    assert options.namespace is None
    assert options.context is None
    assert options.kubeconfig is None
    assert options.run is power.run_power


@pytest.mark.parametrize(
    "argv",
    [
        ("-n", "prod", "--context", "east", "--kubeconfig", "/k", "stop", "web-1"),
        ("stop", "web-1", "-n", "prod", "--context", "east", "--kubeconfig", "/k"),
        ("--namespace", "prod", "stop", "--context=east", "web-1", "--kubeconfig=/k"),
    ],
)
def test_connection_flags_go_before_or_after_the_verb_as_in_kubectl(argv):
    options = parse(*argv)

    assert (options.namespace, options.context, options.kubeconfig) == ("prod", "east", "/k")
    assert options.name == "web-1"


def test_a_flag_after_the_verb_wins_over_the_same_flag_before_it():
    assert parse("-n", "a", "stop", "web-1", "-n", "b").namespace == "b"


@pytest.mark.parametrize("verb", ["start", "stop", "pause", "unpause", "suspend", "resume"])
def test_every_power_verb_is_there(verb):
    options = parse(verb, "web-1", "--no-wait", "--timeout", "30s")

    assert options.verb == verb
    assert options.no_wait is True
    assert options.timeout == 30.0


def test_reboot_is_soft_unless_hard_is_asked():
    assert parse("reboot", "web-1").hard is False
    options = parse("reboot", "web-1", "--hard")
    assert options.hard is True
    assert options.run is power.run_reboot


def test_events_takes_an_optional_request_id_and_an_output_format():
    options = parse("events", "web-1")
    assert (options.name, options.request_id, options.output) == ("web-1", None, None)
    assert options.run is events.run

    options = parse("events", "web-1", "req-1", "-o", "yaml")
    assert (options.request_id, options.output) == ("req-1", "yaml")


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("stop",),
        ("stop", "a", "b"),
        ("explode", "web-1"),
        ("stop", "web-1", "--timeout", "5"),
        ("stop", "web-1", "--timeout", "soon"),
        ("events", "web-1", "-o", "wide"),
        ("reboot", "web-1", "--soft"),
    ],
)
def test_usage_errors_exit_2_with_argparse_message(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        kubectl_nova.main(list(argv))

    assert exited.value.code == 2
    assert "usage: kubectl nova" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [("--help",), ("stop", "--help"), ("events", "-h")])
def test_help_exits_0_and_names_the_plugin_as_kubectl_does(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        kubectl_nova.main(list(argv))

    assert exited.value.code == 0
    assert "kubectl nova" in capsys.readouterr().out


def test_main_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit):
        kubectl_nova.main(["--help"])

    text = capsys.readouterr().out
    for verb in ("start", "stop", "pause", "unpause", "suspend", "resume", "reboot", "events"):
        assert f"    {verb} " in text
