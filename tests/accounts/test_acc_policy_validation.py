"""Policy documents: 400 naming the offending path."""

import pytest

from accounts.policy import PolicyError, validate

GOOD = {
    "Version": "1.0",
    "Statement": [
        {"Effect": "Allow", "Action": ["ems:Describe*"], "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "ems:DeleteService",
            "Resource": "ems:ap-beijing:1255502019:service/ems-7f3k2p9q",
        },
    ],
}


def test_a_good_document_normalizes():
    out = validate(GOOD)
    assert out["statement"][1] == {
        "effect": "deny",
        "action": ["ems:DeleteService"],
        "resource": ["ems:ap-beijing:1255502019:service/ems-7f3k2p9q"],
    }


@pytest.mark.parametrize(
    ("document", "path", "words"),
    [
        ("{not json", "document", "malformed JSON"),
        ([], "document", "JSON object"),
        ({"Statement": []}, "Statement", "non-empty"),
        ({"Statement": [{"Effect": "Allow", "Action": "ems:*"}]}, "Statement[0]", "resource"),
        (
            {
                "Statement": [
                    GOOD["Statement"][0],
                    {"Effect": "Allow", "Action": ["ems:Frobnicate"], "Resource": "*"},
                ]
            },
            "Statement[1].Action[0]",
            "unknown action",
        ),
        (
            {"Statement": [{"Effect": "Maybe", "Action": "ems:*", "Resource": "*"}]},
            "Statement[0].Effect",
            "allow",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": "ems:Zzz*", "Resource": "*"}]},
            "Statement[0].Action[0]",
            "matches no action",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": "ems:*", "Resource": ["*", "cos://x"]}]},
            "Statement[0].Resource[1]",
            "not a resource",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": "ems:*", "Resource": "ems:bj:12ab:x/y"}]},
            "Statement[0].Resource[0]",
            "not a resource",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": 3, "Resource": "*"}]},
            "Statement[0].Action",
            "string",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": "ems:*", "Resource": "*", "Cond": 1}]},
            "Statement[0].Cond",
            "unknown key",
        ),
        (
            {"statement": [{"effect": "allow", "action": "not an action", "resource": "*"}]},
            "statement[0].action[0]",
            "not an action",
        ),
        (  # a resource that sorts before "*" is checked like any other
            {"Statement": [{"Effect": "Allow", "Action": "ems:*", "Resource": "#all"}]},
            "Statement[0].Resource[0]",
            "not a resource",
        ),
        (  # the same key twice in two spellings: refused, not one of them silently chosen
            {
                "Statement": [
                    {"Effect": "Allow", "effect": "Deny", "Action": "ems:*", "Resource": "*"}
                ]
            },
            "Statement[0]",
            "given more than once",
        ),
    ],
)
def test_bad_documents_name_the_path(document, path, words):
    with pytest.raises(PolicyError) as info:
        validate(document)
    assert info.value.path == path
    assert words in str(info.value)
