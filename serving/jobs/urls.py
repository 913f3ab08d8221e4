from django.urls import path

from serving.jobs import views

app_name = "jobs"

urlpatterns = [
    path("", views.job_list, name="job-list"),
    path("new/", views.job_create, name="job-create"),
    path("<str:job_id>/", views.job_detail, name="job-detail"),
    path("<str:job_id>/cancel/", views.job_cancel, name="job-cancel"),
]
