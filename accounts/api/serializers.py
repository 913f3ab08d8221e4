"""Serializers of the accounts API: shapes only; the services decide."""

from __future__ import annotations

from rest_framework import serializers

from accounts.api.fields import ScopedPrimaryKeyRelatedField
from accounts.models import ApiKey, AuditEvent, Membership, Policy, PolicyAttachment


class SignupSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    tenant_name = serializers.CharField(max_length=100, required=False, allow_blank=True)


class SignupResultSerializer(serializers.Serializer):
    app_id = serializers.CharField()
    username = serializers.CharField()
    tenant_name = serializers.CharField()


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at"]


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once; only a hash is kept.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class ServiceRoleSerializer(serializers.Serializer):
    role_name = serializers.CharField()
    authorized = serializers.BooleanField()
    authorized_by = serializers.CharField(allow_null=True)
    authorized_at = serializers.DateTimeField(allow_null=True)
    authorize_url = serializers.CharField()
    own_storage_credentials = serializers.BooleanField()


class StorageCredentialSerializer(serializers.Serializer):
    access_key_id = serializers.CharField(max_length=128)
    secret_access_key = serializers.CharField(max_length=256, write_only=True)
    endpoint_url = serializers.URLField(required=False, allow_blank=True)


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    # empty for a sub-account made without one: not "format: email" in the schema
    email = serializers.CharField(source="user.email", read_only=True)
    is_active = serializers.BooleanField(source="user.is_active", read_only=True)
    policies = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = [
            "id",
            "name",
            "kind",
            "status",
            "username",
            "email",
            "is_active",
            "policies",
            "created_at",
        ]
        read_only_fields = fields

    def get_policies(self, obj) -> list[str]:
        return sorted(a.policy.name for a in obj.attachments.all())


class SubAccountCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    email = serializers.EmailField(required=False, allow_blank=True)


class SubAccountUpdateSerializer(serializers.Serializer):
    password = serializers.CharField(write_only=True, required=False)
    is_active = serializers.BooleanField(required=False)


class InviteSerializer(serializers.Serializer):
    email = serializers.EmailField()


class AcceptSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200)


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class PolicySerializer(serializers.ModelSerializer):
    is_preset = serializers.BooleanField(read_only=True)
    document = serializers.JSONField()

    class Meta:
        model = Policy
        fields = ["id", "name", "description", "document", "is_preset", "created_at", "updated_at"]
        read_only_fields = ["id", "is_preset", "created_at", "updated_at"]
        # name uniqueness is the service's to check (custom names may not shadow presets)
        validators = []


class AttachSerializer(serializers.Serializer):
    policy = ScopedPrimaryKeyRelatedField(
        queryset=Policy.objects.all(), action="accounts:DescribePolicy"
    )


class AttachmentSerializer(serializers.ModelSerializer):
    policy_name = serializers.CharField(source="policy.name", read_only=True)

    class Meta:
        model = PolicyAttachment
        fields = ["id", "policy", "policy_name", "membership", "created_at"]
        read_only_fields = fields


class SimulateSerializer(serializers.Serializer):
    member = ScopedPrimaryKeyRelatedField(
        queryset=Membership.objects.all(), action="accounts:SimulatePolicy"
    )
    action = serializers.CharField(max_length=128)
    resource = serializers.CharField(max_length=300)


class DecisionSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    reason = serializers.CharField()
    policy = serializers.CharField(allow_null=True)
    statement = serializers.JSONField(allow_null=True)


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_label",
            "action",
            "resource",
            "outcome",
            "detail",
        ]
        read_only_fields = fields


class AuditQuerySerializer(serializers.Serializer):
    """The audit list's filters (query parameters); a bad one is a 400 naming it."""

    action = serializers.CharField(required=False, max_length=128)
    outcome = serializers.ChoiceField(choices=AuditEvent.OUTCOMES, required=False)
    actor = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
