from django.urls import path

from models_repo import views

app_name = "models_repo"

urlpatterns = [
    path("", views.config_list, name="config-list"),
    path("new/", views.config_create, name="config-create"),
    path("browse/", views.browse, name="browse"),
    path("browse/download/", views.download, name="download"),
    path("<int:pk>/", views.config_detail, name="config-detail"),
    path("<int:pk>/versions/new/", views.version_create, name="version-create"),
]
