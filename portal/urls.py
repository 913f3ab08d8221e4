"""URLs of the portal: pages, the operator admin, the REST API and its schema, health."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.tenant_admin import tenant_admin_site
from portal import views

# The operator console: the Django admin with the product's name (templates/admin/base_site.html)
admin.site.site_header = "operator console"
admin.site.site_title = "EMS Portal operator console"
admin.site.index_title = "Platform"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("tenant-admin/", tenant_admin_site.urls),
    path("accounts/", include("accounts.urls")),
    path("models/", include("models_repo.urls")),
    path("services/", include("serving.urls")),
    path("jobs/", include("serving.jobs.urls")),
    path("billing/", include("billing.urls")),
    path("api/v1/", include("portal.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
]

handler500 = "portal.middleware.server_error"
