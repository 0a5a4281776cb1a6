binary = "/opt/dev/inference"
