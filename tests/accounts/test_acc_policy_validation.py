"""Policy documents: 400 naming the offending path."""

import pytest

from accounts.policy import PolicyError, action_matches, resource_matches, validate

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
        (  # each item of a list is checked, not only the list
            {"Statement": [{"Effect": "Allow", "Action": ["ems:*", 3], "Resource": "*"}]},
            "Statement[0].Action[1]",
            "must be a string",
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


def test_actions_match_in_any_case_resources_only_exactly():
    """Action names are case-insensitive (as the catalogue's are); resource names are not: a
    policy on service ems-abc says nothing about a resource spelled EMS-ABC."""
    assert action_matches("ems:describe*", "ems:DescribeService")
    assert resource_matches("ems:*:1255502019:service/ems-*", "ems:bj:1255502019:service/ems-abc")
    assert not resource_matches(
        "ems:*:1255502019:service/ems-abc", "ems:bj:1255502019:service/EMS-ABC"
    )
