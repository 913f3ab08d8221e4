"""Web pages of the accounts app, under ``/accounts/``."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from accounts.views import auth, manage

app_name = "accounts"

urlpatterns = [
    path("signup/", auth.signup, name="signup"),
    path("login/", auth.login, name="login"),
    path("logout/", auth.logout, name="logout"),
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            template_name="accounts/password_reset.html",
            email_template_name="accounts/password_reset_email.txt",
            success_url=reverse_lazy("accounts:password-reset-done"),
        ),
        name="password-reset",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html"),
        name="password-reset-done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="accounts/password_reset_confirm.html",
            success_url=reverse_lazy("accounts:password-reset-complete"),
        ),
        name="password-reset-confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="accounts/password_reset_complete.html"
        ),
        name="password-reset-complete",
    ),
    path("", auth.dashboard, name="dashboard"),
    path("switch/", auth.switch_tenant, name="switch-tenant"),
    path("restricted/", auth.restricted, name="restricted"),
    path("service-role/", auth.service_role_page, name="service-role"),
    path("api-keys/", auth.api_keys, name="api-keys"),
    path("sub-accounts/", manage.sub_accounts, name="sub-accounts"),
    path("members/<int:pk>/", manage.sub_account, name="sub-account"),
    path("collaborators/", manage.collaborators, name="collaborators"),
    path("invitations/<str:token>/", manage.invitation_accept, name="invitation-accept"),
    path("policies/", manage.policies, name="policies"),
    path("policies/<int:pk>/", manage.policy_detail, name="policy"),
    path("simulator/", manage.simulator, name="simulator"),
    path("audit/", manage.audit, name="audit"),
]
