# Locust side of compare.sh: one FastHttpUser hitting the trivial endpoint with no wait.
from locust import task
from locust.contrib.fasthttp import FastHttpUser


class Trivial(FastHttpUser):
    @task
    def get(self):
        self.client.get("/metrics")
