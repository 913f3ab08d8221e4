"""The REST API under ``/api/v1/``: one router; each app registers its viewsets here."""

from rest_framework.routers import DefaultRouter

router = DefaultRouter()
router.include_root_view = True

urlpatterns = router.urls
