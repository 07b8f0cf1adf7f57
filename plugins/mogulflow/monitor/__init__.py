"""The monitoring page inside the Airflow UI.

`queries` reads the warehouse (Airflow-free, every aggregate in SQL); `app` is the FastAPI app the
plugin (`mogulflow.monitor.plugin`) mounts on the API server, behind Airflow's own login.
"""
