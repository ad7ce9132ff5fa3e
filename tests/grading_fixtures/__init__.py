"""Implementations for the grader's tests: correct ones, classic mistakes, hostile code."""
