"""Dsn: parsing, parts, masking, equality."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from gochat_actors import Dsn
from gochat_actors._dsn import mask_urls


def test_parts_of_a_mysql_url() -> None:
    dsn = Dsn("mysql+aiomysql://app:s3cret@127.0.0.1:3306/chat?charset=utf8mb4")
    assert dsn.scheme == "mysql+aiomysql"
    assert (dsn.username, dsn.host, dsn.port, dsn.database) == ("app", "127.0.0.1", 3306, "chat")
    assert dsn.query == {"charset": "utf8mb4"}
    assert dsn.password is not None
    assert dsn.password.get_secret_value() == "s3cret"
    assert str(dsn) == "mysql+aiomysql://app:***@127.0.0.1:3306/chat?charset=utf8mb4"
    assert repr(dsn) == "Dsn('mysql+aiomysql://app:***@127.0.0.1:3306/chat?charset=utf8mb4')"
    assert dsn.reveal() == "mysql+aiomysql://app:s3cret@127.0.0.1:3306/chat?charset=utf8mb4"


@pytest.mark.parametrize(
    "url",
    ["sqlite+aiosqlite:///:memory:", "memory://", "redis://127.0.0.1:6379/0", "http://h:2379"],
)
def test_urls_without_password_print_unchanged(url: str) -> None:
    dsn = Dsn(url)
    assert str(dsn) == url == dsn.reveal()
    assert dsn.password is None


def test_password_without_user_and_with_at_sign() -> None:
    dsn = Dsn("redis://:p@ss@cache:6379/0")
    assert str(dsn) == "redis://:***@cache:6379/0"
    assert dsn.host == "cache"


def test_empty_dsn_is_falsy() -> None:
    assert not Dsn("")
    assert Dsn("memory://")
    assert Dsn("").scheme == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:6379", "not a URL"),
        ("redis://h:65536/0", "1..65535"),
        ("redis://h:0/0", "1..65535"),
        ("redis://h:port/0", "1..65535"),
        ("9redis://h", "scheme"),
        ("redis://:hunter2[pw]@h:6379/0", "percent-encode"),
        ("redis://:hun[ter2@h/0", "percent-encode"),
        ("redis://:a]b[c@h/0", "percent-encode"),
        ("redis://:p@[::1/0", "IPv6"),
    ],
)
def test_malformed(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as exc:
        Dsn(url)
    assert url not in str(exc.value)
    # Regression (issue 22 point 5): urllib's message quoted the part in [ ], a password.
    for part in ("pw", "hunter2", "ter2", "c@h", "b"):
        assert f"'{part}'" not in str(exc.value)


def test_equality_and_hash() -> None:
    assert Dsn("memory://") == Dsn("memory://")
    assert Dsn("memory://") != Dsn("redis://h")
    assert len({Dsn("memory://"), Dsn("memory://")}) == 1
    assert Dsn("memory://") != "memory://"


def test_pydantic_round_trip() -> None:
    class Model(BaseModel):
        url: Dsn

    model = Model(url="redis://:pw@h:6379/0")  # type: ignore[arg-type]
    assert isinstance(model.url, Dsn)
    assert model.model_dump()["url"] == model.url  # python mode: the Dsn itself
    assert model.model_dump(mode="json")["url"] == "redis://:***@h:6379/0"
    assert Model(url=model.url).url is model.url


def test_mask_urls_in_free_text() -> None:
    text = "failed: mysql+aiomysql://root:hunter2@db:3306/x; retry redis://:pw@c/0 at 10:30"
    masked = mask_urls(text)
    assert "hunter2" not in masked
    assert ":pw@" not in masked
    assert masked == "failed: mysql+aiomysql://root:***@db:3306/x; retry redis://:***@c/0 at 10:30"


def test_a_secret_parameter_in_the_fragment_is_masked() -> None:
    dsn = Dsn("https://h:2379/?user=ann#access_token=s3cret&x=1")
    assert str(dsn) == "https://h:2379/?user=ann#access_token=***&x=1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://root:#Secret1@etcd:2379", "http://root:***@etcd:2379"),
        ("http://root:1234#pw@etcd:2379", "http://root:***@etcd:2379"),
        ("http://root:2379/pw@etcd:2379", "http://root:***@etcd:2379"),
        ("redis://default:80?pw@cache:6379/0", "redis://default:***@cache:6379/0"),
        (
            "mysql+aiomysql://app:/pw@db:3306/chat?password=x",
            "mysql+aiomysql://app:***@db:3306/chat?password=***",
        ),
    ],
)
def test_a_password_with_an_unencoded_slash_question_mark_or_hash_never_shows(
    url: str, shown: str
) -> None:
    # A / ? or # in a password must be percent-encoded; left as is, urllib ends the host
    # there and may still find a valid URL (host 'root', port 1234 or none): the password
    # was then printed as part of the path, query or fragment. What may be a password
    # is masked (at worst, an '@' in a path is masked with it).
    dsn = Dsn(url)
    assert str(dsn) == shown
    assert "pw" not in repr(dsn).replace("password", "")
    assert "Secret1" not in repr(dsn)
    assert dsn.reveal() == url


def test_an_at_sign_in_the_path_of_a_url_without_user_is_left_alone() -> None:
    assert str(Dsn("sqlite+aiosqlite:///data/a@b.db")) == "sqlite+aiosqlite:///data/a@b.db"
    assert str(Dsn("http://etcd/v3@x")) == "http://etcd/v3@x"


# -- what mutation testing (mutmut) of _dsn.py found untested ------------------------------


def test_an_empty_dsn_has_no_parts_and_prints_empty() -> None:
    dsn = Dsn("")
    assert (str(dsn), repr(dsn), dsn.masked, dsn.reveal()) == ("", "Dsn('')", "", "")
    assert (dsn.port, dsn.host, dsn.username, dsn.password) == (None, None, None, None)
    assert (dsn.path, dsn.database, dsn.query) == ("", "", {})


def test_a_dsn_of_something_else_than_a_string_says_what_it_got() -> None:
    with pytest.raises(TypeError, match=r"^Dsn expects a str, got int$"):
        Dsn(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:6379", "not a URL: expected scheme://..."),
        ("9redis://h", "malformed URL scheme"),
        ("redis://h:0/0", "port must be an integer in 1..65535"),
        ("redis://h:port/0", "port must be an integer in 1..65535"),
        ("redis://h:65536/0", "port must be an integer in 1..65535"),
        (
            "redis://:a]b@h:6379/0",
            "malformed URL: [ or ] in the user or password (percent-encode them: %5B %5D)",
        ),
        (  # the password ends at the last '@': its ']' is the password's
            "redis://u:pw@x]y@h:6379/0",
            "malformed URL: [ or ] in the user or password (percent-encode them: %5B %5D)",
        ),
        (
            "redis://:pw@h]:6379/0?a=[b]",
            "malformed URL: [ ] around the host must hold an IPv6 address ([::1])",
        ),
        ("redis://:pass\uff20word@h:6379/0", "malformed URL"),  # NFKC makes it an '@'
    ],
)
def test_malformed_messages_word_for_word(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as exc:
        Dsn(url)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # a ':' in a password is allowed as it is: all of it is the password
        ("mysql+aiomysql://app:pa:ss@db:3306/chat", "mysql+aiomysql://app:***@db:3306/chat"),
        # another URL in the query: the first '://' ends the scheme
        ("redis://:pw@h:6379/0?next=http://x", "redis://:***@h:6379/0?next=http://x"),
        # unencoded / # in a password that holds ':' or '@' too: up to the last '@'
        ("http://root:/a:b@etcd:2379", "http://root:***@etcd:2379"),
        ("http://root:#a@b@etcd:2379", "http://root:***@etcd:2379"),
        # a path right after '://' is no host: its ':' and '@' are left alone
        ("sqlite+aiosqlite:///x:y.db?a@b", "sqlite+aiosqlite:///x:y.db?a@b"),
    ],
)
def test_masked_forms_of_odd_urls(url: str, shown: str) -> None:
    assert str(Dsn(url)) == shown


def test_a_quote_left_open_is_masked_to_its_end() -> None:
    # a message cut short (a driver truncates long values) leaves the quote open
    assert mask_urls("login failed: password='hunter2") == "login failed: password='***"
