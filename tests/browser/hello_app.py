"""Smallest useful Streamlit app: proves the browser harness can type, click and read back."""

import streamlit as st

st.title("Harness hello")
name = st.text_input("Name", key="name")
if st.button("Greet", key="greet"):
    # st.text, not st.write: typed text must never be interpreted as Markdown.
    st.text(f"clicked {name}")
