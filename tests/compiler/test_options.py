"""AccelOptions: validation messages, defaults, hashing."""
import pytest

from accel.compiler.options import AccelOptions, AccelOptionsError


def test_defaults_are_lossless_fusions():
    o = AccelOptions.from_dict(None)
    assert (o.fuse_attention, o.fuse_ffn, o.merge_projections, o.replace_linear) == (True, True, True, True)
    assert o.strict is False and o.cudagraphs is False


def test_misspelled_key_names_the_valid_keys_and_a_suggestion():
    with pytest.raises(AccelOptionsError) as e:
        AccelOptions.from_dict({"fuse_atention": False})
    msg = str(e.value)
    assert "did you mean 'fuse_attention'" in msg
    for key in AccelOptions.field_names():
        assert key in msg


@pytest.mark.parametrize("bad", [{"strict": "yes"}, {"fuse_ffn": 1}, {"dump_dir": 3}, {"inductor_config": [1]},
                                 {"inductor_config": {"no_such_inductor_flag": 1}}])
def test_bad_values_are_rejected_with_the_field_name(bad):
    with pytest.raises(AccelOptionsError) as e:
        AccelOptions.from_dict(bad)
    assert next(iter(bad)) in str(e.value)


def test_options_must_be_a_dict():
    with pytest.raises(AccelOptionsError, match="must be a dict"):
        AccelOptions.from_dict(["strict"])


def test_hash_is_stable_and_covers_what_changes_code_only():
    base = AccelOptions()
    assert base.compute_hash() == AccelOptions().compute_hash()
    assert base.compute_hash() != base.replace(fuse_ffn=False).compute_hash()
    assert base.compute_hash() != base.replace(inductor_config={"max_autotune": True}).compute_hash()
    # where output goes and how failures surface do not change compiled code
    assert base.compute_hash() == base.replace(dump_dir="/tmp/x", strict=True).compute_hash()


def test_every_field_is_documented():
    for name, default, doc in AccelOptions.describe():
        assert len(doc) > 20, name


def test_dump_dir_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("ACCEL_DUMP_DIR", "/tmp/accel-dumps")
    assert AccelOptions().dump_dir == "/tmp/accel-dumps"


def test_readme_options_table_lists_every_option_with_its_default():
    """The README's Options table names every field of AccelOptions, in order, with its default (the table is
    written by hand: a new or renamed option, or a changed default, must reach it)."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    table = readme[readme.index("## Options"):readme.index("## Reading the report")]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", table, re.M)
    assert [name for name, _ in rows] == [name for name, _, _ in AccelOptions.describe()]
    for (name, shown), (_, default, _) in zip(rows, AccelOptions.describe()):
        assert shown in (repr(default), str(default)), (name, shown, default)
