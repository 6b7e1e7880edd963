from django.urls import path

from portal import views

urlpatterns = [
    path("", views.form),
    path("queue", views.queue),
    path("queue/claim", views.claim),
    path("queue/<str:ticket>/assign", views.assign),
    path("queue/<str:ticket>/resolve", views.resolve),
]
