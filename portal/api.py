"""The REST API under ``/api/v1/``: one router; each app registers its viewsets here."""

from rest_framework.routers import DefaultRouter

router = DefaultRouter()
router.include_root_view = True

from accounts.api.views import register as register_accounts  # noqa: E402

register_accounts(router)

from models_repo.api import register as register_models_repo  # noqa: E402

register_models_repo(router)

from serving.api import register as register_serving  # noqa: E402

register_serving(router)

from billing.api import register as register_billing  # noqa: E402

register_billing(router)

urlpatterns = router.urls
