"""Viewsets of the accounts API: validate, call a service, serialize."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from accounts import authz, selectors, service_role, services, throttles
from accounts.api import serializers as s
from accounts.api.authentication import (
    ActorBasicAuthentication,
    ActorSessionAuthentication,
    ApiKeyAuthentication,
)
from accounts.api.base import ScopedViewSet, request_actor
from accounts.models import ApiKey, AuditEvent, Membership, Policy, ServiceRoleAuthorization


@extend_schema(tags=["auth"])
class SignupViewSet(ScopedViewSet):
    """Sign up: a new tenant with a unique 10-digit app id, and its main account."""

    authentication_classes = []
    permission_classes = [AllowAny]
    public_actions = {"create": "sign-up creates the tenant: there is no actor yet"}
    serializer_class = s.SignupSerializer

    @extend_schema(responses={201: s.SignupResultSerializer})
    def create(self, request, *args, **kwargs):
        throttles.limit(request, "signup")
        data = s.SignupSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.signup(**data.validated_data)
        body = {
            "app_id": member.tenant.app_id,
            "username": member.user.username,
            "tenant_name": member.tenant.name,
        }
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(tags=["auth"])
class ApiKeyViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, ScopedViewSet):
    """Your API keys. The key is shown once, on creation; HTTP basic may create the first."""

    authentication_classes = [
        ApiKeyAuthentication,
        ActorSessionAuthentication,
        ActorBasicAuthentication,
    ]
    serializer_class = s.ApiKeySerializer
    queryset = ApiKey.objects.none()
    required_actions = {
        "list": "ems:ListApiKeys",
        "create": "ems:CreateApiKey",
        "destroy": "ems:DeleteApiKey",
        "retrieve": "ems:ListApiKeys",
    }

    def scoped(self, actor):
        return selectors.api_keys(actor=actor)

    @extend_schema(responses={201: s.ApiKeyCreatedSerializer})
    def create(self, request, *args, **kwargs):
        throttles.limit(request, "sensitive", account=throttles.account_of(request))
        data = s.ApiKeySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, raw = services.api_key_create(actor=self.actor(), name=data.validated_data["name"])
        body = s.ApiKeySerializer(key).data | {"key": raw}
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.api_key_revoke(actor=self.actor(), api_key=instance)


@extend_schema(tags=["service-role"])
class ServiceRoleViewSet(ScopedViewSet):
    """The service role (EMS_ServiceRole): status, authorize, revoke; own storage credentials."""

    serializer_class = s.ServiceRoleSerializer
    queryset = ServiceRoleAuthorization.objects.none()
    required_actions = {
        "list": "accounts:DescribeServiceRole",
        "authorize": "accounts:AuthorizeServiceRole",
        "revoke": "accounts:RevokeServiceRole",
        "storage_credentials": {
            "PUT": "accounts:PutStorageCredential",
            "DELETE": "accounts:DeleteStorageCredential",
        },
    }

    def _status(self, actor):
        current = service_role.current_authorization(actor.tenant)
        return {
            "role_name": "EMS_ServiceRole",
            "authorized": current is not None,
            "authorized_by": current.authorized_by.name
            if current and current.authorized_by
            else None,
            "authorized_at": current.authorized_at if current else None,
            "authorize_url": reverse("accounts:service-role"),
            "own_storage_credentials": hasattr(actor.tenant, "storage_credential"),
        }

    @extend_schema(
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT, description="One object with the fields of ServiceRole."
            )
        }
    )
    def list(self, request, *args, **kwargs):
        return Response(s.ServiceRoleSerializer(self._status(request_actor(request))).data)

    @extend_schema(request=None, responses={200: s.ServiceRoleSerializer})
    @action(detail=False, methods=["post"])
    def authorize(self, request, *args, **kwargs):
        actor = request_actor(request)
        services.service_role_authorize(actor=actor)
        return Response(s.ServiceRoleSerializer(self._status(actor)).data)

    @extend_schema(request=None, responses={200: s.ServiceRoleSerializer})
    @action(detail=False, methods=["post"])
    def revoke(self, request, *args, **kwargs):
        actor = request_actor(request)
        services.service_role_revoke(actor=actor)
        return Response(s.ServiceRoleSerializer(self._status(actor)).data)

    @extend_schema(request=s.StorageCredentialSerializer, responses={204: None})
    @action(detail=False, methods=["put", "delete"], url_path="storage-credentials")
    def storage_credentials(self, request, *args, **kwargs):
        actor = request_actor(request)
        if request.method == "DELETE":
            services.storage_credential_delete(actor=actor)
        else:
            data = s.StorageCredentialSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            services.storage_credential_put(actor=actor, **data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AttachMixin:
    """``{id}/policies/``: GET lists, POST ``{"policy": id}`` attaches;
    ``{id}/policies/{policy_id}/`` DELETE detaches."""

    @extend_schema(
        request=s.AttachSerializer,
        responses={200: s.AttachmentSerializer(many=True), 201: s.AttachmentSerializer},
    )
    # the member's attachments are listed whole (the schema says a plain list, as answered)
    @action(detail=True, methods=["get", "post"], url_path="policies", pagination_class=None)
    def policies(self, request, pk=None, **kwargs):
        member = self.get_object()
        actor = self.actor()
        if request.method == "GET":
            rows = selectors.attachments(actor=actor, member=member)
            return Response(s.AttachmentSerializer(rows, many=True).data)
        data = s.AttachSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        row = services.policy_attach(
            actor=actor, member=member, policy_row=data.validated_data["policy"]
        )
        return Response(s.AttachmentSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={204: None},
        parameters=[OpenApiParameter("policy_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
    )
    @action(detail=True, methods=["delete"], url_path=r"policies/(?P<policy_id>[0-9]+)")
    def detach(self, request, pk=None, policy_id=None, **kwargs):
        member = self.get_object()
        actor = self.actor()
        policy_row = get_object_or_404(
            selectors.policies(actor=actor).filter(attachments__membership=member), pk=policy_id
        )
        services.policy_detach(actor=actor, member=member, policy_row=policy_row)
        return Response(status=status.HTTP_204_NO_CONTENT)


_MEMBER_ACTIONS = {
    "policies": {"GET": "accounts:ListAttachedPolicies", "POST": "accounts:AttachPolicy"},
    "detach": "accounts:DetachPolicy",
}


@extend_schema(tags=["members"])
class SubAccountViewSet(
    AttachMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet
):
    """Sub-accounts of the tenant: names unique in it; they log in with app id + name."""

    serializer_class = s.MemberSerializer
    queryset = Membership.objects.none()
    required_actions = {
        "list": "accounts:ListSubAccounts",
        "create": "accounts:CreateSubAccount",
        "retrieve": "accounts:DescribeSubAccount",
        "partial_update": "accounts:UpdateSubAccount",
        "destroy": "accounts:DeleteSubAccount",
        **_MEMBER_ACTIONS,
    }

    def scoped(self, actor):
        return selectors.sub_accounts(actor=actor).prefetch_related("attachments__policy")

    @extend_schema(request=s.SubAccountCreateSerializer, responses={201: s.MemberSerializer})
    def create(self, request, *args, **kwargs):
        data = s.SubAccountCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.sub_account_create(actor=self.actor(), **data.validated_data)
        return Response(s.MemberSerializer(member).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.SubAccountUpdateSerializer, responses={200: s.MemberSerializer})
    def partial_update(self, request, pk=None, **kwargs):
        member = self.get_object()
        data = s.SubAccountUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.sub_account_update(actor=self.actor(), member=member, **data.validated_data)
        return Response(s.MemberSerializer(member).data)

    def destroy(self, request, pk=None, **kwargs):
        services.sub_account_delete(actor=self.actor(), member=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["members"])
class CollaboratorViewSet(
    AttachMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet
):
    """Collaborators: existing users of other tenants, invited by email."""

    serializer_class = s.MemberSerializer
    queryset = Membership.objects.none()
    required_actions = {
        "list": "accounts:ListCollaborators",
        "create": "accounts:InviteCollaborator",
        "retrieve": "accounts:ListCollaborators",
        "destroy": "accounts:DeleteCollaborator",
        **_MEMBER_ACTIONS,
    }
    public_actions = {
        "accept": "the invitation token is the authorization: any logged-in user it was sent to"
    }

    def scoped(self, actor):
        return selectors.collaborators(actor=actor).prefetch_related("attachments__policy")

    @extend_schema(request=s.InviteSerializer, responses={202: s.DetailSerializer})
    def create(self, request, *args, **kwargs):
        data = s.InviteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.collaborator_invite(actor=self.actor(), email=data.validated_data["email"])
        body = {"detail": "If this address belongs to an EMS user, an invitation was sent."}
        return Response(body, status=status.HTTP_202_ACCEPTED)

    def destroy(self, request, pk=None, **kwargs):
        services.collaborator_remove(actor=self.actor(), member=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.AcceptSerializer, responses={200: s.MemberSerializer})
    @action(detail=False, methods=["post"])
    def accept(self, request, *args, **kwargs):
        data = s.AcceptSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.collaborator_accept(user=request.user, token=data.validated_data["token"])
        return Response(s.MemberSerializer(member).data)


@extend_schema(tags=["policies"])
class PolicyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Custom policies of the tenant and the platform's presets (read-only)."""

    serializer_class = s.PolicySerializer
    queryset = Policy.objects.none()
    required_actions = {
        "list": "accounts:ListPolicies",
        "retrieve": "accounts:DescribePolicy",
        "create": "accounts:CreatePolicy",
        "update": "accounts:UpdatePolicy",
        "partial_update": "accounts:UpdatePolicy",
        "destroy": "accounts:DeletePolicy",
    }

    def scoped(self, actor):
        return selectors.policies(actor=actor)

    def create(self, request, *args, **kwargs):
        data = s.PolicySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.policy_create(actor=self.actor(), **data.validated_data)
        return Response(s.PolicySerializer(row).data, status=status.HTTP_201_CREATED)

    def update(self, request, pk=None, **kwargs):
        row = self.get_object()
        data = s.PolicySerializer(row, data=request.data, partial=self.action == "partial_update")
        data.is_valid(raise_exception=True)
        services.policy_update(actor=self.actor(), policy_row=row, **data.validated_data)
        return Response(s.PolicySerializer(row).data)

    def partial_update(self, request, pk=None, **kwargs):
        return self.update(request, pk=pk)

    def destroy(self, request, pk=None, **kwargs):
        services.policy_delete(actor=self.actor(), policy_row=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["policies"])
class SimulateViewSet(ScopedViewSet):
    """Can member X do action Y on resource Z? The answer and the statement that decided it."""

    serializer_class = s.SimulateSerializer
    required_actions = {"create": "accounts:SimulatePolicy"}

    @extend_schema(responses={200: s.DecisionSerializer})
    def create(self, request, *args, **kwargs):
        data = s.SimulateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        v = data.validated_data
        decision = authz.explain(v["member"], v["action"], v["resource"])
        body = {
            "allowed": decision.allowed,
            "reason": decision.reason,
            "policy": decision.policy,
            "statement": decision.statement,
        }
        return Response(body)


@extend_schema(tags=["audit"])
@extend_schema_view(list=extend_schema(parameters=[s.AuditQuerySerializer]))
class AuditViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """The tenant's audit log, newest first; filter by action, outcome, actor, time."""

    serializer_class = s.AuditEventSerializer
    queryset = AuditEvent.objects.none()
    filter_backends = []
    required_actions = {"list": "accounts:ListAuditEvents", "retrieve": "accounts:ListAuditEvents"}

    def scoped(self, actor):
        if self.action != "list":
            return selectors.audit_events(actor=actor)
        # validated: a NUL byte, an out-of-range id or date is a 400, never a database error
        query = s.AuditQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        return selectors.audit_events(
            actor=actor,
            action=q.get("action"),
            outcome=q.get("outcome"),
            actor_id=q.get("actor"),
            since=q.get("since"),
            until=q.get("until"),
        )


def register(router) -> None:
    router.register("auth/signup", SignupViewSet, basename="signup")
    router.register("auth/api-keys", ApiKeyViewSet, basename="api-key")
    router.register("service-role", ServiceRoleViewSet, basename="service-role")
    router.register("sub-accounts", SubAccountViewSet, basename="sub-account")
    router.register("collaborators", CollaboratorViewSet, basename="collaborator")
    router.register("policies", PolicyViewSet, basename="policy")
    router.register("authz/simulate", SimulateViewSet, basename="authz-simulate")
    router.register("audit", AuditViewSet, basename="audit")
