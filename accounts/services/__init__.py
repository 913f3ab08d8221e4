"""Every state change of the accounts app: keyword-only, an acting membership, one transaction,
one audit row. Views, serializers and the admin call these; they never decide themselves."""

from accounts.services.api_keys import api_key_authenticate, api_key_create, api_key_revoke
from accounts.services.members import (
    collaborator_accept,
    collaborator_invite,
    collaborator_remove,
    signup,
    sub_account_create,
    sub_account_delete,
    sub_account_update,
)
from accounts.services.policies import (
    policy_attach,
    policy_create,
    policy_delete,
    policy_detach,
    policy_update,
)
from accounts.services.role import (
    service_role_authorize,
    service_role_revoke,
    storage_credential_delete,
    storage_credential_put,
)
from accounts.services.tenants import (
    tenant_create,
    tenant_delete,
    tenant_reinstate,
    tenant_suspend,
)

__all__ = [
    "api_key_authenticate",
    "api_key_create",
    "api_key_revoke",
    "collaborator_accept",
    "collaborator_invite",
    "collaborator_remove",
    "policy_attach",
    "policy_create",
    "policy_delete",
    "policy_detach",
    "policy_update",
    "service_role_authorize",
    "service_role_revoke",
    "signup",
    "storage_credential_delete",
    "storage_credential_put",
    "sub_account_create",
    "sub_account_delete",
    "sub_account_update",
    "tenant_create",
    "tenant_delete",
    "tenant_reinstate",
    "tenant_suspend",
]
