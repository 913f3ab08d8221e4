from django.urls import path

from serving import views

app_name = "serving"

urlpatterns = [
    path("", views.service_list, name="service-list"),
    path("new/", views.service_create, name="service-create"),
    path("<str:service_id>/", views.service_detail, name="service-detail"),
    path("<str:service_id>/<str:action>/", views.service_action, name="service-action"),
]
