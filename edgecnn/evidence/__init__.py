"""The evidence side: two models' scores on the same images compared, judged by gates, and written for people
(an HTML report) and for CI (JUnit XML). It takes runners and scores and never loads a model itself.
"""
